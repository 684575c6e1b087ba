// y[r, c] = x[r, c] / max(||x[r, :]||_2, eps) * gamma[c], fp32, row-major: two kernels (row norms, then a scaling
// pass that reads x again) vs one fused kernel that keeps its share of the row in registers between the two steps.
//
// Every kernel runs one 256-thread block per row, and thread t owns columns t, t + 256, t + 512, ... (coalesced
// loads). The sum of squares is accumulated in the same order and combined by the same block reduction in both
// arms, so both return bitwise identical outputs. See l2norm_scale_fusion.py for the math.
#include "aiperf.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kMaxRows = 0x7fffffff;

// The block-wide sum, returned to every thread. Called once per block: the shared slots are never reused.
__device__ __forceinline__ float block_sum(float value) {
  __shared__ float warp_sums[kWarps];
  for (int offset = 16; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  if (threadIdx.x % 32 == 0) {
    warp_sums[threadIdx.x / 32] = value;
  }
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    total += warp_sums[w];
  }
  return total;
}

__device__ __forceinline__ float inverse_norm(float sum_squares, float eps) {
  return 1.0f / fmaxf(sqrtf(sum_squares), eps);
}

// Unfused step 1: one value per row, 1 / max(||x_r||, eps).
__global__ void __launch_bounds__(kThreads) row_inverse_norm_kernel(float* __restrict__ inv,
                                                                    const float* __restrict__ x, int64_t dim,
                                                                    float eps) {
  const float* row = x + static_cast<int64_t>(blockIdx.x) * dim;
  float sum_squares = 0.0f;
  for (int64_t c = threadIdx.x; c < dim; c += kThreads) {
    sum_squares = fmaf(row[c], row[c], sum_squares);
  }
  const float total = block_sum(sum_squares);
  if (threadIdx.x == 0) {
    inv[blockIdx.x] = inverse_norm(total, eps);
  }
}

// Unfused step 2: read x again (from HBM: the row norms pass streamed the whole matrix through L2 since).
__global__ void __launch_bounds__(kThreads) scale_rows_kernel(float* __restrict__ y, const float* __restrict__ x,
                                                              const float* __restrict__ inv,
                                                              const float* __restrict__ gamma, int64_t dim) {
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * dim;
  const float scale = inv[blockIdx.x];
  for (int64_t c = threadIdx.x; c < dim; c += kThreads) {
    y[offset + c] = x[offset + c] * scale * gamma[c];
  }
}

// Fused: each thread loads its kPerThread columns once into registers, the block reduces, then the same registers
// are scaled and written. Requires dim <= kThreads * kPerThread (the launcher picks the instance).
template <int kPerThread>
__global__ void __launch_bounds__(kThreads) l2norm_scale_fused_kernel(float* __restrict__ y,
                                                                      const float* __restrict__ x,
                                                                      const float* __restrict__ gamma, int64_t dim,
                                                                      float eps) {
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * dim;
  float v[kPerThread];
  float sum_squares = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(i) * kThreads;
    v[i] = c < dim ? x[offset + c] : 0.0f;
    sum_squares = fmaf(v[i], v[i], sum_squares);
  }
  const float scale = inverse_norm(block_sum(sum_squares), eps);
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(i) * kThreads;
    if (c < dim) {
      y[offset + c] = v[i] * scale * gamma[c];
    }
  }
}

}  // namespace

AIPERF_EXPORT int l2norm_scale_unfused(float* y, float* inv, const float* x, const float* gamma, int64_t rows,
                                       int64_t dim, double eps, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) {
    return 0;
  }
  if (rows > kMaxRows) {
    return static_cast<int>(cudaErrorInvalidConfiguration);
  }
  const unsigned grid = static_cast<unsigned>(rows);
  row_inverse_norm_kernel<<<grid, kThreads, 0, stream>>>(inv, x, dim, static_cast<float>(eps));
  if (const cudaError_t err = cudaGetLastError(); err != cudaSuccess) {
    return static_cast<int>(err);
  }
  scale_rows_kernel<<<grid, kThreads, 0, stream>>>(y, x, inv, gamma, dim);
  AIPERF_RETURN_LAUNCH_ERROR();
}

AIPERF_EXPORT int l2norm_scale_fused(float* y, const float* x, const float* gamma, int64_t rows, int64_t dim,
                                     double eps, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) {
    return 0;
  }
  if (rows > kMaxRows) {
    return static_cast<int>(cudaErrorInvalidConfiguration);
  }
  const unsigned grid = static_cast<unsigned>(rows);
  const float e = static_cast<float>(eps);
  if (dim <= kThreads * 4) {
    l2norm_scale_fused_kernel<4><<<grid, kThreads, 0, stream>>>(y, x, gamma, dim, e);
  } else if (dim <= kThreads * 8) {
    l2norm_scale_fused_kernel<8><<<grid, kThreads, 0, stream>>>(y, x, gamma, dim, e);
  } else if (dim <= kThreads * 16) {
    l2norm_scale_fused_kernel<16><<<grid, kThreads, 0, stream>>>(y, x, gamma, dim, e);
  } else if (dim <= kThreads * 32) {
    l2norm_scale_fused_kernel<32><<<grid, kThreads, 0, stream>>>(y, x, gamma, dim, e);
  } else {
    return static_cast<int>(cudaErrorInvalidValue);  // rows wider than 8192 do not fit the register-resident design
  }
  AIPERF_RETURN_LAUNCH_ERROR();
}
