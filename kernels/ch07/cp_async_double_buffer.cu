// 9-tap row filter: synchronous staging (one tile per block) vs a persistent grid that prefetches the next tile
// with cp.async into a second buffer while filtering the current one. See cp_async_double_buffer.py for the math.
#include <cuda_pipeline.h>

#include "row_filter.cuh"

namespace {

using namespace row_filter;

// Queue this thread's share of the tile's copies: 16-byte cp.async for the aligned middle, 4-byte for the < 4
// floats at either end. The copies bypass the registers; nothing waits here.
__device__ void issue_tile(float* s, const float* __restrict__ x, const Tile& tile) {
  const int64_t n_vec = (tile.vec_hi - tile.vec_lo) / 4;
  for (int64_t v = threadIdx.x; v < n_vec; v += kThreads) {
    const int64_t g = tile.vec_lo + 4 * v;
    __pipeline_memcpy_async(s + (g - tile.base), x + g, 16);
  }
  const int head = static_cast<int>(tile.vec_lo - tile.lo), tail = static_cast<int>(tile.hi - tile.vec_hi);
  if (static_cast<int>(threadIdx.x) < head + tail) {
    const int64_t g =
        static_cast<int>(threadIdx.x) < head ? tile.lo + threadIdx.x : tile.vec_hi + (threadIdx.x - head);
    __pipeline_memcpy_async(s + (g - tile.base), x + g, 4);
  }
}

// Each block walks tiles blockIdx.x, blockIdx.x + gridDim.x, ...; tile i lives in buffer i % 2. The copies of
// tile i + 1 are in flight while tile i is filtered.
__global__ __launch_bounds__(kThreads) void filter_cp_async(float* __restrict__ y, const float* __restrict__ x,
                                                            const float* __restrict__ taps, int64_t cols,
                                                            int64_t tiles) {
  __shared__ __align__(16) float s[2][kSpan];
  float w[kTaps];
  load_taps(w, taps);
  const int64_t step = gridDim.x;
  if (static_cast<int64_t>(blockIdx.x) < tiles) issue_tile(s[0], x, Tile(blockIdx.x, cols));
  __pipeline_commit();
  int buffer = 0;
  for (int64_t t = blockIdx.x; t < tiles; t += step, buffer ^= 1) {
    if (t + step < tiles) issue_tile(s[buffer ^ 1], x, Tile(t + step, cols));
    __pipeline_commit();       // one group per iteration, empty or not, so "all but the newest" means tile t
    __pipeline_wait_prior(1);  // this thread's copies of tile t have landed
    __syncthreads();           // ... and everyone else's
    filter_tile(y, s[buffer], Tile(t, cols), cols, w);
    __syncthreads();           // nobody reads buffer `buffer` any more: the next iteration may refill it
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------- launchers

AIPERF_EXPORT int row_filter_sync(float* y, const float* x, const float* taps, int64_t rows, int64_t cols,
                                  cudaStream_t stream) {
  return launch_sync_staging(y, x, taps, rows, cols, stream);
}

// x must be 16-byte aligned (the wrapper checks); rows of any length.
AIPERF_EXPORT int row_filter_cp_async(float* y, const float* x, const float* taps, int64_t rows, int64_t cols,
                                      cudaStream_t stream) {
  const int64_t tiles = tile_count(rows, cols);
  if (tiles <= 0) return 0;
  const int grid = resident_grid(reinterpret_cast<const void*>(filter_cp_async), tiles);
  filter_cp_async<<<grid, kThreads, 0, stream>>>(y, x, taps, cols, tiles);
  AIPERF_RETURN_LAUNCH_ERROR();
}
