// Sum of squares with a fixed persistent grid (one 256-thread block per SM): one accumulator fed by one 4-byte
// load per step vs four accumulators fed by four independent 16-byte loads per step.
//
// Both kernels reduce each thread's sum across the block in shared memory and add one partial per block into
// *out with atomicAdd (out must be zero on entry).
#include "aiperf.cuh"

namespace {

constexpr int kThreads = 256;

__device__ void add_block_sum(float* out, float value) {
  __shared__ float warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) {
    value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) {
    warp_sums[warp] = value;
  }
  __syncthreads();
  if (warp == 0) {
    value = lane < kThreads / 32 ? warp_sums[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) {
      value += __shfl_down_sync(0xffffffffu, value, offset);
    }
    if (lane == 0) {
      atomicAdd(out, value);
    }
  }
}

__global__ void __launch_bounds__(kThreads) sum_squares_one_chain(float* out, const float* __restrict__ x,
                                                                  int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  float acc = 0.0f;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    acc = fmaf(x[i], x[i], acc);
  }
  add_block_sum(out, acc);
}

__device__ __forceinline__ float sum_squares4(float4 v, float acc) {
  acc = fmaf(v.x, v.x, acc);
  acc = fmaf(v.y, v.y, acc);
  acc = fmaf(v.z, v.z, acc);
  return fmaf(v.w, v.w, acc);
}

__global__ void __launch_bounds__(kThreads) sum_squares_four_chains(float* out, const float* __restrict__ x,
                                                                    int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const bool aligned = (reinterpret_cast<uintptr_t>(x) % alignof(float4)) == 0;
  const int64_t vectors = aligned ? n / 4 : 0;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;
  int64_t i = tid;
  for (; i + 3 * stride < vectors; i += 4 * stride) {
    const float4 v0 = x4[i];
    const float4 v1 = x4[i + stride];
    const float4 v2 = x4[i + 2 * stride];
    const float4 v3 = x4[i + 3 * stride];
    acc0 = sum_squares4(v0, acc0);
    acc1 = sum_squares4(v1, acc1);
    acc2 = sum_squares4(v2, acc2);
    acc3 = sum_squares4(v3, acc3);
  }
  for (; i < vectors; i += stride) {
    acc0 = sum_squares4(x4[i], acc0);
  }
  for (int64_t j = 4 * vectors + tid; j < n; j += stride) {
    acc1 = fmaf(x[j], x[j], acc1);
  }
  add_block_sum(out, (acc0 + acc1) + (acc2 + acc3));
}

int sm_count(int* count) {
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) {
    err = cudaDeviceGetAttribute(count, cudaDevAttrMultiProcessorCount, device);
  }
  return static_cast<int>(err);
}

}  // namespace

AIPERF_EXPORT int sum_squares_one_accumulator(float* out, const float* x, int64_t n, cudaStream_t stream) {
  int sms = 0;
  if (const int err = sm_count(&sms)) {
    return err;
  }
  sum_squares_one_chain<<<sms, kThreads, 0, stream>>>(out, x, n);
  AIPERF_RETURN_LAUNCH_ERROR();
}

AIPERF_EXPORT int sum_squares_four_accumulators(float* out, const float* x, int64_t n, cudaStream_t stream) {
  int sms = 0;
  if (const int err = sm_count(&sms)) {
    return err;
  }
  sum_squares_four_chains<<<sms, kThreads, 0, stream>>>(out, x, n);
  AIPERF_RETURN_LAUNCH_ERROR();
}
