// A per-channel FIR filter (valid cross-correlation, out[c][t] = sum_k w[k] * x[c][t + k]), each thread computing
// outputs of one channel in a grid-stride loop: the tap loop with a runtime trip count vs a compile-time trip
// count under #pragma unroll.
//
// Both accumulate the taps in the same order with fmaf, so the two kernels return bitwise identical results.
// Unrolling is what lets the taps live in registers: a register array needs compile-time indices.
#include "aiperf.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kOutputsPerThread = 8;

__global__ void fir_runtime_taps(float* __restrict__ out, const float* __restrict__ x, const float* __restrict__ w,
                                 int64_t samples, int64_t out_len, int taps) {
  const float* xc = x + static_cast<int64_t>(blockIdx.y) * samples;
  float* oc = out + static_cast<int64_t>(blockIdx.y) * out_len;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; t < out_len; t += stride) {
    float acc = 0.0f;
    for (int k = 0; k < taps; ++k) {
      acc = fmaf(w[k], xc[t + k], acc);
    }
    oc[t] = acc;
  }
}

template <int kTaps>
__global__ void fir_unrolled_taps(float* __restrict__ out, const float* __restrict__ x, const float* __restrict__ w,
                                  int64_t samples, int64_t out_len) {
  const float* xc = x + static_cast<int64_t>(blockIdx.y) * samples;
  float* oc = out + static_cast<int64_t>(blockIdx.y) * out_len;
  float taps[kTaps];
#pragma unroll
  for (int k = 0; k < kTaps; ++k) {
    taps[k] = w[k];
  }
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; t < out_len; t += stride) {
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < kTaps; ++k) {
      acc = fmaf(taps[k], xc[t + k], acc);
    }
    oc[t] = acc;
  }
}

bool grid_for(int64_t channels, int64_t out_len, dim3* grid) {
  const int64_t per_block = static_cast<int64_t>(kThreads) * kOutputsPerThread;
  const int64_t blocks = (out_len + per_block - 1) / per_block;
  if (channels > 65535 || blocks > 0x7fffffff) {
    return false;
  }
  *grid = dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(channels));
  return true;
}

}  // namespace

AIPERF_EXPORT int fir_rolled(float* out, const float* x, const float* w, int64_t channels, int64_t samples,
                             int64_t taps, cudaStream_t stream) {
  const int64_t out_len = samples - taps + 1;
  if (channels <= 0 || taps <= 0 || out_len <= 0) {
    return 0;
  }
  dim3 grid;
  if (!grid_for(channels, out_len, &grid) || taps > 0x7fffffff) {
    return static_cast<int>(cudaErrorInvalidConfiguration);
  }
  fir_runtime_taps<<<grid, kThreads, 0, stream>>>(out, x, w, samples, out_len, static_cast<int>(taps));
  AIPERF_RETURN_LAUNCH_ERROR();
}

AIPERF_EXPORT int fir_unrolled(float* out, const float* x, const float* w, int64_t channels, int64_t samples,
                               int64_t taps, cudaStream_t stream) {
  const int64_t out_len = samples - taps + 1;
  if (channels <= 0 || taps <= 0 || out_len <= 0) {
    return 0;
  }
  dim3 grid;
  if (!grid_for(channels, out_len, &grid)) {
    return static_cast<int>(cudaErrorInvalidConfiguration);
  }
  switch (taps) {
    case 15:
      fir_unrolled_taps<15><<<grid, kThreads, 0, stream>>>(out, x, w, samples, out_len);
      break;
    case 31:
      fir_unrolled_taps<31><<<grid, kThreads, 0, stream>>>(out, x, w, samples, out_len);
      break;
    default:
      return static_cast<int>(cudaErrorInvalidValue);
  }
  AIPERF_RETURN_LAUNCH_ERROR();
}
