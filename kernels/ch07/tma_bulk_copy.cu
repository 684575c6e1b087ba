// 9-tap row filter: synchronous staging by every thread (one tile per block) vs a persistent grid in which one
// thread streams tiles into a 4-stage ring with Hopper bulk copies (cp.async.bulk, the TMA engine) completing on
// mbarriers. See tma_bulk_copy.py for the math. Needs sm_90.
#include <cstdint>

#include "row_filter.cuh"

namespace {

using namespace row_filter;

constexpr int kStages = 4;

// ---------------------------------------------------------------------------------------------- PTX wrappers

__device__ inline uint32_t smem_address(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ inline void mbarrier_init(uint64_t* bar, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_address(bar)), "r"(arrivals) : "memory");
}

// The barrier's current phase completes after this arrival and `bytes` of bulk-copy data.
__device__ inline void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_address(bar)), "r"(bytes)
               : "memory");
}

__device__ inline void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n\t.reg .pred p;\n\t"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
        "selp.u32 %0, 1, 0, p;\n\t}"
        : "=r"(done)
        : "r"(smem_address(bar)), "r"(parity)
        : "memory");
  } while (!done);
}

// Global -> shared bulk copy by the TMA engine; `bytes` and both addresses are multiples of 16.
__device__ inline void bulk_copy_g2s(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   smem_address(dst)),
               "l"(src), "r"(bytes), "r"(smem_address(bar))
               : "memory");
}

// Order this thread's earlier generic-proxy shared-memory accesses before later async-proxy (TMA) writes.
__device__ inline void fence_proxy_async_shared() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// ---------------------------------------------------------------------------------------------- kernel

// Thread 0 only: arm the stage's barrier and start the bulk copy of the tile's aligned middle. A tile without one
// (a row shorter than 8 floats) still arrives, with 0 bytes expected, so the phase completes.
__device__ void issue_tile(float* s, uint64_t* bar, const float* __restrict__ x, const Tile& tile) {
  const uint32_t bytes = static_cast<uint32_t>((tile.vec_hi - tile.vec_lo) * sizeof(float));
  mbarrier_arrive_expect_tx(bar, bytes);
  if (bytes > 0) bulk_copy_g2s(s + (tile.vec_lo - tile.base), x + tile.vec_lo, bytes, bar);
}

// Each block walks tiles blockIdx.x + i * gridDim.x; tile i lives in stage i % kStages, whose barrier completes
// phase i / kStages when the tile lands. Up to kStages tiles per block are in flight.
__global__ __launch_bounds__(kThreads) void filter_tma(float* __restrict__ y, const float* __restrict__ x,
                                                       const float* __restrict__ taps, int64_t cols, int64_t tiles) {
  __shared__ __align__(128) float s[kStages][kSpan];
  __shared__ __align__(8) uint64_t full[kStages];
  float w[kTaps];
  load_taps(w, taps);
  const int64_t step = gridDim.x;
  if (threadIdx.x == 0) {
    for (int i = 0; i < kStages; ++i) mbarrier_init(&full[i], 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    for (int i = 0; i < kStages; ++i) {
      const int64_t t = blockIdx.x + i * step;
      if (t < tiles) issue_tile(s[i], &full[i], x, Tile(t, cols));
    }
  }
  __syncthreads();
  int64_t i = 0;
  for (int64_t t = blockIdx.x; t < tiles; t += step, ++i) {
    const int stage = static_cast<int>(i % kStages);
    const Tile tile(t, cols);
    const int head = static_cast<int>(tile.vec_lo - tile.lo), tail = static_cast<int>(tile.hi - tile.vec_hi);
    if (static_cast<int>(threadIdx.x) < head + tail) {  // the < 4 unaligned floats at either end, by hand
      const int64_t g =
          static_cast<int>(threadIdx.x) < head ? tile.lo + threadIdx.x : tile.vec_hi + (threadIdx.x - head);
      s[stage][g - tile.base] = x[g];
    }
    mbarrier_wait(&full[stage], static_cast<uint32_t>((i / kStages) & 1));
    __syncthreads();  // the hand-copied ends are visible too
    filter_tile(y, s[stage], tile, cols, w);
    __syncthreads();  // nobody reads this stage any more
    if (threadIdx.x == 0 && t + kStages * step < tiles) {
      fence_proxy_async_shared();
      issue_tile(s[stage], &full[stage], x, Tile(t + kStages * step, cols));
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------- launchers

AIPERF_EXPORT int row_filter_sync(float* y, const float* x, const float* taps, int64_t rows, int64_t cols,
                                  cudaStream_t stream) {
  return launch_sync_staging(y, x, taps, rows, cols, stream);
}

// x must be 16-byte aligned (the wrapper checks); rows of any length.
AIPERF_EXPORT int row_filter_tma(float* y, const float* x, const float* taps, int64_t rows, int64_t cols,
                                 cudaStream_t stream) {
  const int64_t tiles = tile_count(rows, cols);
  if (tiles <= 0) return 0;
  const int grid = resident_grid(reinterpret_cast<const void*>(filter_tma), tiles);
  filter_tma<<<grid, kThreads, 0, stream>>>(y, x, taps, cols, tiles);
  AIPERF_RETURN_LAUNCH_ERROR();
}
