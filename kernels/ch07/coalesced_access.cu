// Mean of squares of every row: one thread per row (strided across a warp) vs one warp per row (coalesced).
// See coalesced_access.py for the math.
#include "aiperf.cuh"

namespace {

constexpr int kRowThreads = 128;
constexpr int kWarpThreads = 256;
constexpr int kRowsPerBlock = kWarpThreads / 32;
constexpr int kUnroll = 4;

// ---------------------------------------------------------------------------------------------- kernels

// Thread r walks row r: at each step the 32 lanes of a warp read 32 addresses `cols` floats apart.
__global__ __launch_bounds__(kRowThreads) void mean_square_thread_per_row(float* __restrict__ out,
                                                                          const float* __restrict__ x, int64_t rows,
                                                                          int64_t cols) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowThreads + threadIdx.x;
  if (row >= rows) return;
  const float* xr = x + row * cols;
  float acc = 0.0f;
  for (int64_t c = 0; c < cols; ++c) acc = fmaf(xr[c], xr[c], acc);
  out[row] = acc / static_cast<float>(cols);
}

// Warp w of the block owns one row; lane l reads elements l, l + 32, ... (as float4 when kVec), so a warp's load
// covers 128 (or 512) consecutive bytes. kUnroll independent loads per lane are in flight at once.
template <bool kVec>
__global__ __launch_bounds__(kWarpThreads) void mean_square_warp_per_row(float* __restrict__ out,
                                                                         const float* __restrict__ x, int64_t rows,
                                                                         int64_t cols) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;  // whole warps leave together: the shuffles below see all 32 lanes
  const float* xr = x + row * cols;
  float acc[kUnroll] = {};
  if (kVec) {
    const float4* xr4 = reinterpret_cast<const float4*>(xr);
    const int64_t n4 = cols / 4;
    int64_t i = lane;
    for (; i + 32 * (kUnroll - 1) < n4; i += 32 * kUnroll) {
      float4 v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) v[u] = __ldcs(xr4 + i + 32 * u);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        acc[u] = fmaf(v[u].x, v[u].x, fmaf(v[u].y, v[u].y, fmaf(v[u].z, v[u].z, fmaf(v[u].w, v[u].w, acc[u]))));
    }
    for (; i < n4; i += 32) {
      const float4 v = __ldcs(xr4 + i);
      acc[0] = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, acc[0]))));
    }
  } else {
    int64_t c = lane;
    for (; c + 32 * (kUnroll - 1) < cols; c += 32 * kUnroll) {
      float v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) v[u] = xr[c + 32 * u];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) acc[u] = fmaf(v[u], v[u], acc[u]);
    }
    for (; c < cols; c += 32) acc[0] = fmaf(xr[c], xr[c], acc[0]);
  }
  float total = 0.0f;
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) total += acc[u];
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) total += __shfl_xor_sync(0xffffffffu, total, offset);
  if (lane == 0) out[row] = total / static_cast<float>(cols);
}

}  // namespace

// ---------------------------------------------------------------------------------------------- launchers

AIPERF_EXPORT int mean_square_strided(float* out, const float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0) return 0;
  const int64_t blocks = (rows + kRowThreads - 1) / kRowThreads;
  mean_square_thread_per_row<<<static_cast<unsigned>(blocks), kRowThreads, 0, stream>>>(out, x, rows, cols);
  AIPERF_RETURN_LAUNCH_ERROR();
}

AIPERF_EXPORT int mean_square_coalesced(float* out, const float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0) return 0;
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  if (cols % 4 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0) {
    mean_square_warp_per_row<true><<<static_cast<unsigned>(blocks), kWarpThreads, 0, stream>>>(out, x, rows, cols);
  } else {
    mean_square_warp_per_row<false><<<static_cast<unsigned>(blocks), kWarpThreads, 0, stream>>>(out, x, rows, cols);
  }
  AIPERF_RETURN_LAUNCH_ERROR();
}
