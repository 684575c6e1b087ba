// A 9-tap FIR filter along every row (zero-padded at both ends of a row), computed from tiles staged in shared
// memory. Shared by cp_async_double_buffer.cu and tma_bulk_copy.cu: the tile geometry, the filter arithmetic and
// the baseline that both compare against (synchronous staging through registers).
//
//   y[r, o] = sum_t w[t] * x[r, o - kRadius + t]     (x[r, c] = 0 outside 0 <= c < cols)
#pragma once

#include "aiperf.cuh"

namespace row_filter {

constexpr int kRadius = 4;
constexpr int kTaps = 2 * kRadius + 1;
constexpr int kThreads = 256;
constexpr int kTile = 2048;                                       // outputs per tile, 8 per thread
constexpr int kSpan = kTile + 2 * kRadius + 4;                    // staged floats: halo + up to 3 for alignment
constexpr int kLoads = (kTile + 2 * kRadius + kThreads - 1) / kThreads;  // per-thread loads of the baseline
static_assert((kSpan * sizeof(float)) % 16 == 0, "each stage must start 16-byte aligned");

// Tile t of row r covers outputs [o0, o0 + n_out) and needs the inputs at flat indices [lo, hi) (clipped to the
// row). Shared-memory slot j holds x[base + j], base = lo rounded down to a multiple of 4 floats, so the 16-byte
// aligned middle [vec_lo, vec_hi) can be copied as whole vectors; [lo, vec_lo) and [vec_hi, hi) are < 4 floats.
struct Tile {
  int64_t row, o0, lo, hi, base, vec_lo, vec_hi;
  int n_out;

  __device__ Tile(int64_t t, int64_t cols) {
    const int64_t per_row = (cols + kTile - 1) / kTile;
    row = t / per_row;
    o0 = (t % per_row) * kTile;
    n_out = static_cast<int>(cols - o0 < kTile ? cols - o0 : kTile);
    const int64_t first = o0 - kRadius < 0 ? 0 : o0 - kRadius;
    const int64_t last = o0 + n_out + kRadius > cols ? cols : o0 + n_out + kRadius;
    lo = row * cols + first;
    hi = row * cols + last;
    base = lo & ~int64_t{3};
    const int64_t up = (lo + 3) & ~int64_t{3};
    vec_lo = up < hi ? up : hi;
    const int64_t down = hi & ~int64_t{3};
    vec_hi = down > vec_lo ? down : vec_lo;
  }
};

inline int64_t tile_count(int64_t rows, int64_t cols) { return rows * ((cols + kTile - 1) / kTile); }

__device__ inline void load_taps(float (&w)[kTaps], const float* __restrict__ taps) {
#pragma unroll
  for (int t = 0; t < kTaps; ++t) w[t] = __ldg(taps + t);
}

// Filter one staged tile: thread k writes outputs o0 + k, o0 + k + 256, ... (coalesced stores).
__device__ inline void filter_tile(float* __restrict__ y, const float* s, const Tile& tile, int64_t cols,
                                   const float (&w)[kTaps]) {
  const int shift = static_cast<int>(tile.row * cols + tile.o0 - kRadius - tile.base);  // slot of tap 0, output 0
  float* yt = y + tile.row * cols + tile.o0;
  const bool interior = tile.o0 >= kRadius && tile.o0 + tile.n_out + kRadius <= cols;
  for (int k = threadIdx.x; k < tile.n_out; k += kThreads) {
    float acc = 0.0f;
    if (interior) {
#pragma unroll
      for (int t = 0; t < kTaps; ++t) acc = fmaf(w[t], s[shift + k + t], acc);
    } else {
#pragma unroll
      for (int t = 0; t < kTaps; ++t) {
        const int64_t c = tile.o0 + k - kRadius + t;
        if (c >= 0 && c < cols) acc = fmaf(w[t], s[shift + k + t], acc);
      }
    }
    yt[k] = acc;
  }
}

// Baseline: one tile per block. Every thread loads its share of the tile into registers (kLoads independent loads
// in flight), stores it to shared memory, and the block waits for all of it before filtering.
__global__ __launch_bounds__(kThreads) void filter_sync_staging(float* __restrict__ y, const float* __restrict__ x,
                                                                const float* __restrict__ taps, int64_t cols) {
  __shared__ __align__(16) float s[kSpan];
  float w[kTaps];
  load_taps(w, taps);
  const Tile tile(blockIdx.x, cols);
  float v[kLoads];
#pragma unroll
  for (int k = 0; k < kLoads; ++k) {
    const int64_t g = tile.lo + threadIdx.x + k * kThreads;
    v[k] = g < tile.hi ? x[g] : 0.0f;
  }
#pragma unroll
  for (int k = 0; k < kLoads; ++k) {
    const int64_t g = tile.lo + threadIdx.x + k * kThreads;
    if (g < tile.hi) s[g - tile.base] = v[k];
  }
  __syncthreads();
  filter_tile(y, s, tile, cols, w);
}

inline int launch_sync_staging(float* y, const float* x, const float* taps, int64_t rows, int64_t cols,
                               cudaStream_t stream) {
  const int64_t tiles = tile_count(rows, cols);
  if (tiles <= 0) return 0;
  filter_sync_staging<<<static_cast<unsigned>(tiles), kThreads, 0, stream>>>(y, x, taps, cols);
  AIPERF_RETURN_LAUNCH_ERROR();
}

// A persistent grid: every SM filled once at the kernel's occupancy (never more blocks than tiles).
inline int resident_grid(const void* kernel, int64_t tiles) {
  int device = 0, sms = 0, per_sm = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0);
  const int64_t full = static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
  return static_cast<int>(tiles < full ? tiles : full);
}

}  // namespace row_filter
