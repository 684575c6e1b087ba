// Device-to-device float copy: the simple kernel vs one tuned for bytes in flight (see tuned_copy.py for the math).
#include "aiperf.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // float4 loads issued per thread before the first store: 64 B in flight per thread

// ---------------------------------------------------------------------------------------------- kernels

// One thread per element, 4-byte loads: the first version everyone writes.
__global__ void copy_one_float_per_thread(float* __restrict__ dst, const float* __restrict__ src, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = src[i];
}

// A grid sized to fill the SMs once; each thread streams kUnroll 16-byte vectors per trip (all loads before any
// store), then the leftover vectors, then the < 4 trailing floats. `n_vec` is 0 when a pointer is not 16-byte
// aligned, and the scalar loop copies everything.
__global__ __launch_bounds__(kThreads) void copy_vec4_unrolled(float* __restrict__ dst, const float* __restrict__ src,
                                                               int64_t n, int64_t n_vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const float4* src4 = reinterpret_cast<const float4*>(src);
  float4* dst4 = reinterpret_cast<float4*>(dst);
  int64_t i = first;
  for (; i + (kUnroll - 1) * stride < n_vec; i += kUnroll * stride) {
    float4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = __ldcs(src4 + i + u * stride);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) __stcs(dst4 + i + u * stride, v[u]);
  }
  for (; i < n_vec; i += stride) __stcs(dst4 + i, __ldcs(src4 + i));
  for (int64_t j = 4 * n_vec + first; j < n; j += stride) dst[j] = src[j];
}

int resident_grid(int64_t work_items) {
  int device = 0, sms = 0, per_sm = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, copy_vec4_unrolled, kThreads, 0);
  const int64_t needed = (work_items + kThreads - 1) / kThreads;
  const int64_t full = static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
  return static_cast<int>(needed < 1 ? 1 : (needed < full ? needed : full));
}

}  // namespace

// ---------------------------------------------------------------------------------------------- launchers

AIPERF_EXPORT int copy_simple(float* dst, const float* src, int64_t n, cudaStream_t stream) {
  if (n <= 0) return 0;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  copy_one_float_per_thread<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(dst, src, n);
  AIPERF_RETURN_LAUNCH_ERROR();
}

AIPERF_EXPORT int copy_tuned(float* dst, const float* src, int64_t n, cudaStream_t stream) {
  if (n <= 0) return 0;
  const bool aligned = ((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) & 15) == 0;
  const int64_t n_vec = aligned ? n / 4 : 0;
  copy_vec4_unrolled<<<resident_grid(n_vec > 0 ? n_vec : n), kThreads, 0, stream>>>(dst, src, n, n_vec);
  AIPERF_RETURN_LAUNCH_ERROR();
}
