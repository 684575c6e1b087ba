// Per-row sum of squares, one 256-thread block per row: the block's 256 partial sums are combined by a
// shared-memory tree (8 halving steps, a barrier after each) vs warp shuffles (one smem slot per warp, 1 barrier).
//
// Both kernels load the row identically: thread t accumulates x[row][t], x[row][t + 256], ... (coalesced, any
// cols, including cols < 256 where the idle threads contribute 0). Every __syncthreads() is reached by all threads.
#include "aiperf.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float thread_sum_squares(const float* __restrict__ x, int64_t cols) {
  const float* row = x + static_cast<int64_t>(blockIdx.x) * cols;
  float acc = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    acc = fmaf(row[c], row[c], acc);
  }
  return acc;
}

__global__ void __launch_bounds__(kThreads) row_sumsq_tree_kernel(float* __restrict__ out,
                                                                  const float* __restrict__ x, int64_t cols) {
  __shared__ float partial[kThreads];
  const int tid = threadIdx.x;
  partial[tid] = thread_sum_squares(x, cols);
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (tid < s) {
      partial[tid] += partial[tid + s];
    }
    __syncthreads();
  }
  if (tid == 0) {
    out[blockIdx.x] = partial[0];
  }
}

__device__ __forceinline__ float warp_sum(float value, int first_offset) {
  for (int offset = first_offset; offset > 0; offset /= 2) {
    value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  return value;
}

__global__ void __launch_bounds__(kThreads) row_sumsq_shuffle_kernel(float* __restrict__ out,
                                                                     const float* __restrict__ x, int64_t cols) {
  __shared__ float warp_sums[kWarps];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const float value = warp_sum(thread_sum_squares(x, cols), 16);
  if (lane == 0) {
    warp_sums[warp] = value;
  }
  __syncthreads();
  if (warp == 0) {
    const float total = warp_sum(lane < kWarps ? warp_sums[lane] : 0.0f, kWarps / 2);
    if (lane == 0) {
      out[blockIdx.x] = total;
    }
  }
}

int check_grid(int64_t rows) {
  return rows > 0x7fffffff ? static_cast<int>(cudaErrorInvalidConfiguration) : 0;
}

}  // namespace

AIPERF_EXPORT int row_sumsq_tree(float* out, const float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0) {
    return 0;
  }
  if (const int err = check_grid(rows)) {
    return err;
  }
  row_sumsq_tree_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(out, x, cols);
  AIPERF_RETURN_LAUNCH_ERROR();
}

AIPERF_EXPORT int row_sumsq_shuffle(float* out, const float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0) {
    return 0;
  }
  if (const int err = check_grid(rows)) {
    return err;
  }
  row_sumsq_shuffle_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(out, x, cols);
  AIPERF_RETURN_LAUNCH_ERROR();
}
