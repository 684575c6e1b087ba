// Softplus log(1 + e^x) on bf16 activations, computed in fp32: a sign branch with a different heavy formula on
// each side vs one branch-free formula.
//
// Both forms are the numerically stable softplus (no overflow of e^x): for x > 0, x + log1p(e^-x); otherwise
// log1p(e^x). With mixed signs in a warp the branchy kernel runs both sides one after the other.
#include <cuda_bf16.h>

#include "aiperf.cuh"

namespace {

constexpr int kThreads = 256;

__global__ void softplus_branchy(__nv_bfloat16* __restrict__ out, const __nv_bfloat16* __restrict__ in, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i < n) {
    const float x = __bfloat162float(in[i]);
    float y;
    if (x > 0.0f) {
      y = x + log1pf(expf(-x));
    } else {
      y = log1pf(expf(x));
    }
    out[i] = __float2bfloat16(y);
  }
}

__global__ void softplus_branch_free(__nv_bfloat16* __restrict__ out, const __nv_bfloat16* __restrict__ in,
                                     int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i < n) {
    const float x = __bfloat162float(in[i]);
    out[i] = __float2bfloat16(fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))));
  }
}

template <typename Kernel>
int launch(Kernel kernel, __nv_bfloat16* out, const __nv_bfloat16* in, int64_t n, cudaStream_t stream) {
  if (n <= 0) {
    return 0;
  }
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff) {
    return static_cast<int>(cudaErrorInvalidConfiguration);
  }
  kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(out, in, n);
  AIPERF_RETURN_LAUNCH_ERROR();
}

}  // namespace

AIPERF_EXPORT int softplus_with_branch(__nv_bfloat16* out, const __nv_bfloat16* in, int64_t n, cudaStream_t stream) {
  return launch(softplus_branchy, out, in, n, stream);
}

AIPERF_EXPORT int softplus_without_branch(__nv_bfloat16* out, const __nv_bfloat16* in, int64_t n,
                                          cudaStream_t stream) {
  return launch(softplus_branch_free, out, in, n, stream);
}
