// Per-layer squared gradient norms, each step needing a temporary as large as its gradient: cudaMalloc/cudaFree per
// step vs cudaMallocFromPoolAsync/cudaFreeAsync from a pool that keeps its memory. See stream_ordered_allocator.py.
//
// Both launchers run the same kernels on the same stream: out[s] = sum_i (grads[s][i] * inv_scale)^2, the unscaled
// gradient written to the step's scratch buffer by one kernel and its squares reduced by a second (atomicAdd of one
// partial per block into out[s], zeroed once up front). Every cuda* return is checked; a step's scratch is freed even
// when its kernels failed to launch.
#include <mutex>

#include "aiperf.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kBlocksPerSm = 4;
constexpr int kMaxDevices = 64;

#define AIPERF_TRY(call)                                  \
  do {                                                    \
    const cudaError_t aiperf_err_ = (call);               \
    if (aiperf_err_ != cudaSuccess) {                     \
      return static_cast<int>(aiperf_err_);               \
    }                                                     \
  } while (0)

// ---------------------------------------------------------------------------------------------- kernels

__global__ void __launch_bounds__(kThreads) unscale_kernel(float* __restrict__ scratch,
                                                           const float* __restrict__ grad, int64_t n,
                                                           float inv_scale) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    scratch[i] = grad[i] * inv_scale;
  }
}

__device__ __forceinline__ float warp_sum(float value) {
  for (int offset = 16; offset > 0; offset /= 2) {
    value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  return value;
}

__global__ void __launch_bounds__(kThreads) sum_squares_kernel(float* __restrict__ out,
                                                               const float* __restrict__ scratch, int64_t n) {
  __shared__ float warp_sums[kWarps];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  float acc = 0.0f;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    acc = fmaf(scratch[i], scratch[i], acc);
  }
  acc = warp_sum(acc);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    warp_sums[warp] = acc;
  }
  __syncthreads();
  if (warp == 0) {
    const float total = warp_sum(lane < kWarps ? warp_sums[lane] : 0.0f);
    if (lane == 0) {
      atomicAdd(out, total);
    }
  }
}

// ---------------------------------------------------------------------------------------------- per-device state

std::mutex g_mutex;
cudaMemPool_t g_pools[kMaxDevices] = {};
int g_sm_counts[kMaxDevices] = {};

int current_device(int* device) {
  AIPERF_TRY(cudaGetDevice(device));
  return *device >= 0 && *device < kMaxDevices ? 0 : static_cast<int>(cudaErrorInvalidDevice);
}

int sm_count(int device, int* sms) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_sm_counts[device] == 0) {
    AIPERF_TRY(cudaDeviceGetAttribute(&g_sm_counts[device], cudaDevAttrMultiProcessorCount, device));
  }
  *sms = g_sm_counts[device];
  return 0;
}

// A pool of device memory created once per device, with a release threshold of "never": memory freed into it stays
// mapped for the next allocation instead of going back to the driver at the next synchronization.
int retained_pool(int device, cudaMemPool_t* pool) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_pools[device] == nullptr) {
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.handleTypes = cudaMemHandleTypeNone;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    cudaMemPool_t created = nullptr;
    AIPERF_TRY(cudaMemPoolCreate(&created, &props));
    uint64_t keep_everything = UINT64_MAX;
    const cudaError_t err = cudaMemPoolSetAttribute(created, cudaMemPoolAttrReleaseThreshold, &keep_everything);
    if (err != cudaSuccess) {
      (void)cudaMemPoolDestroy(created);  // already failing: report the first error
      return static_cast<int>(err);
    }
    g_pools[device] = created;
  }
  *pool = g_pools[device];
  return 0;
}

// ---------------------------------------------------------------------------------------------- one step

int step_kernels(float* out, float* scratch, const float* grad, int64_t n, float inv_scale, int grid,
                 cudaStream_t stream) {
  unscale_kernel<<<grid, kThreads, 0, stream>>>(scratch, grad, n, inv_scale);
  AIPERF_TRY(cudaGetLastError());
  sum_squares_kernel<<<grid, kThreads, 0, stream>>>(out, scratch, n);
  AIPERF_TRY(cudaGetLastError());
  return 0;
}

int grid_for(int64_t n, int* grid) {
  int device = 0, sms = 0;
  if (const int err = current_device(&device)) {
    return err;
  }
  if (const int err = sm_count(device, &sms)) {
    return err;
  }
  const int64_t needed = (n + kThreads - 1) / kThreads;
  *grid = static_cast<int>(needed < static_cast<int64_t>(sms) * kBlocksPerSm ? needed : sms * kBlocksPerSm);
  return 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------- launchers

// cudaMalloc, the step's kernels, cudaFree, for each step. cudaFree waits for the whole device to finish before it
// returns, so the host cannot queue step s+1 while step s runs.
AIPERF_EXPORT int grad_norms_malloc_free(float* out, const float* grads, int64_t steps, int64_t n, double inv_scale,
                                         cudaStream_t stream) {
  if (steps <= 0) {
    return 0;
  }
  AIPERF_TRY(cudaMemsetAsync(out, 0, static_cast<size_t>(steps) * sizeof(float), stream));
  if (n <= 0) {
    return 0;
  }
  int grid = 0;
  if (const int err = grid_for(n, &grid)) {
    return err;
  }
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  for (int64_t s = 0; s < steps; ++s) {
    float* scratch = nullptr;
    AIPERF_TRY(cudaMalloc(&scratch, bytes));
    const int launched = step_kernels(out + s, scratch, grads + s * n, n, static_cast<float>(inv_scale), grid, stream);
    const cudaError_t freed = cudaFree(scratch);
    if (launched != 0) {
      return launched;
    }
    AIPERF_TRY(freed);
  }
  return 0;
}

// The same steps with the scratch allocated and freed in stream order from a retained pool: no device
// synchronization, and after the first call the pool hands back the same mapped memory every step.
AIPERF_EXPORT int grad_norms_stream_ordered(float* out, const float* grads, int64_t steps, int64_t n,
                                            double inv_scale, cudaStream_t stream) {
  if (steps <= 0) {
    return 0;
  }
  AIPERF_TRY(cudaMemsetAsync(out, 0, static_cast<size_t>(steps) * sizeof(float), stream));
  if (n <= 0) {
    return 0;
  }
  int grid = 0, device = 0;
  if (const int err = grid_for(n, &grid)) {
    return err;
  }
  if (const int err = current_device(&device)) {
    return err;
  }
  cudaMemPool_t pool = nullptr;
  if (const int err = retained_pool(device, &pool)) {
    return err;
  }
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  for (int64_t s = 0; s < steps; ++s) {
    void* scratch = nullptr;
    AIPERF_TRY(cudaMallocFromPoolAsync(&scratch, bytes, pool, stream));
    const int launched = step_kernels(out + s, static_cast<float*>(scratch), grads + s * n, n,
                                      static_cast<float>(inv_scale), grid, stream);
    const cudaError_t freed = cudaFreeAsync(scratch, stream);
    if (launched != 0) {
      return launched;
    }
    AIPERF_TRY(freed);
  }
  return 0;
}
