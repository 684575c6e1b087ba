// SAXPY (out = alpha * x + y) launched as one block vs a grid that covers every element.
//
// single_block: the first kernel most people write, <<<1, 1024>>> with a block-stride loop: one SM of 132 works.
// full_grid:    one thread per element, ceil(n / 256) blocks of 256, spread over every SM.
#include "aiperf.cuh"

namespace {

constexpr int kSingleBlockThreads = 1024;
constexpr int kGridThreads = 256;

__global__ void saxpy_block_stride(float* __restrict__ out, const float* __restrict__ x,
                                   const float* __restrict__ y, float alpha, int64_t n) {
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    out[i] = alpha * x[i] + y[i];
  }
}

__global__ void saxpy_one_per_thread(float* __restrict__ out, const float* __restrict__ x,
                                     const float* __restrict__ y, float alpha, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    out[i] = alpha * x[i] + y[i];
  }
}

}  // namespace

AIPERF_EXPORT int saxpy_single_block(float* out, const float* x, const float* y, double alpha, int64_t n,
                                     cudaStream_t stream) {
  if (n > 0) {
    saxpy_block_stride<<<1, kSingleBlockThreads, 0, stream>>>(out, x, y, static_cast<float>(alpha), n);
  }
  AIPERF_RETURN_LAUNCH_ERROR();
}

AIPERF_EXPORT int saxpy_full_grid(float* out, const float* x, const float* y, double alpha, int64_t n,
                                  cudaStream_t stream) {
  if (n > 0) {
    const int64_t blocks = (n + kGridThreads - 1) / kGridThreads;
    if (blocks > 0x7fffffff) {
      return static_cast<int>(cudaErrorInvalidConfiguration);
    }
    saxpy_one_per_thread<<<static_cast<unsigned>(blocks), kGridThreads, 0, stream>>>(
        out, x, y, static_cast<float>(alpha), n);
  }
  AIPERF_RETURN_LAUNCH_ERROR();
}
