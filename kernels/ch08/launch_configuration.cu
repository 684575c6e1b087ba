// SwiGLU activation out = silu(gate) * up, one element per thread, launched with 32 vs 256 threads per block.
//
// An SM holds at most 32 resident blocks (sm_90), so 32-thread blocks cap it at 32 warps (50% occupancy) and
// make the block scheduler launch and retire one block per 32 elements; 256-thread blocks reach 64 warps.
#include "aiperf.cuh"

namespace {

__global__ void swiglu(float* __restrict__ out, const float* __restrict__ gate, const float* __restrict__ up,
                       int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    const float g = gate[i];
    out[i] = g / (1.0f + __expf(-g)) * up[i];
  }
}

int launch(float* out, const float* gate, const float* up, int64_t n, int threads, cudaStream_t stream) {
  if (n <= 0) {
    return 0;
  }
  const int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 0x7fffffff) {
    return static_cast<int>(cudaErrorInvalidConfiguration);
  }
  swiglu<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(out, gate, up, n);
  AIPERF_RETURN_LAUNCH_ERROR();
}

}  // namespace

AIPERF_EXPORT int swiglu_warp_blocks(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream) {
  return launch(out, gate, up, n, 32, stream);
}

AIPERF_EXPORT int swiglu_full_blocks(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream) {
  return launch(out, gate, up, n, 256, stream);
}
