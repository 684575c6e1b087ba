// Residual add out = a + b: 4-byte loads vs 16-byte vector loads, same grid-stride loop and grid.
// See vectorized_loads.py for the math.
#include "aiperf.cuh"

namespace {

constexpr int kThreads = 256;

// ---------------------------------------------------------------------------------------------- kernels

__global__ __launch_bounds__(kThreads) void add_scalar(float* __restrict__ out, const float* __restrict__ a,
                                                       const float* __restrict__ b, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) out[i] = a[i] + b[i];
}

// The first 4 * n_vec floats as float4 (n_vec is 0 when a pointer is not 16-byte aligned), the rest as floats.
__global__ __launch_bounds__(kThreads) void add_vec4(float* __restrict__ out, const float* __restrict__ a,
                                                     const float* __restrict__ b, int64_t n, int64_t n_vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const float4* a4 = reinterpret_cast<const float4*>(a);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  float4* out4 = reinterpret_cast<float4*>(out);
  for (int64_t i = first; i < n_vec; i += stride) {
    const float4 u = a4[i], v = b4[i];
    out4[i] = make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w);
  }
  for (int64_t i = 4 * n_vec + first; i < n; i += stride) out[i] = a[i] + b[i];
}

// The same grid for both arms: every SM filled once at full occupancy (or fewer blocks for a small tensor).
int resident_grid(const void* kernel, int64_t items) {
  int device = 0, sms = 0, per_sm = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0);
  const int64_t needed = (items + kThreads - 1) / kThreads;
  const int64_t full = static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
  return static_cast<int>(needed < 1 ? 1 : (needed < full ? needed : full));
}

}  // namespace

// ---------------------------------------------------------------------------------------------- launchers

AIPERF_EXPORT int add_residual_scalar(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream) {
  if (n <= 0) return 0;
  add_scalar<<<resident_grid(reinterpret_cast<const void*>(add_scalar), n), kThreads, 0, stream>>>(out, a, b, n);
  AIPERF_RETURN_LAUNCH_ERROR();
}

AIPERF_EXPORT int add_residual_vec4(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream) {
  if (n <= 0) return 0;
  const uintptr_t bits = reinterpret_cast<uintptr_t>(out) | reinterpret_cast<uintptr_t>(a) |
                         reinterpret_cast<uintptr_t>(b);
  const int64_t n_vec = (bits & 15) == 0 ? n / 4 : 0;
  const int grid = resident_grid(reinterpret_cast<const void*>(add_vec4), n);
  add_vec4<<<grid, kThreads, 0, stream>>>(out, a, b, n, n_vec);
  AIPERF_RETURN_LAUNCH_ERROR();
}
