// fp32 C = A @ B on the CUDA cores (A is m x k, B is k x n, all row-major), both through the same 32 x 32 block
// tile and 32-deep shared-memory slabs, loaded by the same coalesced global reads: one output per thread (1024
// threads) vs a 4 x 4 register micro-tile per thread (64 threads).
//
// Both sum the k products in ascending order with fmaf, so they return bitwise identical results.
#include "aiperf.cuh"

namespace {

constexpr int kTile = 32;        // block tile: 32 x 32 outputs, 32-deep k slabs
constexpr int kPitch = kTile + 1;  // a_tile rows padded so a column (fixed kk, varying row) spans 32 banks
constexpr int kMicro = 4;        // the optimized arm's register micro-tile: 4 x 4 outputs per thread
constexpr int kMicroThreads = (kTile / kMicro) * (kTile / kMicro);  // 64
constexpr int kSharedThreads = kTile * kTile;                        // 1024

// Stage the 32 x 32 slabs of A (rows row0.., columns k0..) and B (rows k0.., columns col0..) into shared memory.
// Thread t handles column t % 32 of rows t / 32, t / 32 + kThreads / 32, ...: consecutive threads read consecutive
// columns of one row (128-byte coalesced). Out-of-range elements are zero.
template <int kThreads>
__device__ __forceinline__ void load_slabs(float (*a_tile)[kPitch], float (*b_tile)[kTile], const float* __restrict__ a,
                                           const float* __restrict__ b, int64_t m, int64_t k, int64_t n, int64_t row0,
                                           int64_t col0, int64_t k0) {
  constexpr int kRowStep = kThreads / kTile;
  const int cc = static_cast<int>(threadIdx.x) % kTile;
  const int r_first = static_cast<int>(threadIdx.x) / kTile;
  const int64_t a_col = k0 + cc, b_col = col0 + cc;
#pragma unroll
  for (int r = r_first; r < kTile; r += kRowStep) {
    const int64_t a_row = row0 + r, b_row = k0 + r;
    a_tile[r][cc] = (a_row < m && a_col < k) ? a[a_row * k + a_col] : 0.0f;
    b_tile[r][cc] = (b_row < k && b_col < n) ? b[b_row * n + b_col] : 0.0f;
  }
}

// Thread (ty, tx) = (tid / 32, tid % 32) computes C[row0 + ty][col0 + tx]: per multiply-add, one shared load of A
// (a warp-wide broadcast: the warp shares ty) and one of B (32 consecutive words).
__global__ void __launch_bounds__(kSharedThreads) matmul_one_output_per_thread(float* __restrict__ c,
                                                                               const float* __restrict__ a,
                                                                               const float* __restrict__ b, int64_t m,
                                                                               int64_t k, int64_t n) {
  __shared__ float a_tile[kTile][kPitch];
  __shared__ float b_tile[kTile][kTile];
  const int tx = threadIdx.x % kTile;
  const int ty = threadIdx.x / kTile;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kTile;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < k; k0 += kTile) {
    load_slabs<kSharedThreads>(a_tile, b_tile, a, b, m, k, n, row0, col0, k0);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTile; ++kk) {
      acc = fmaf(a_tile[ty][kk], b_tile[kk][tx], acc);
    }
    __syncthreads();
  }
  const int64_t gr = row0 + ty, gc = col0 + tx;
  if (gr < m && gc < n) {
    c[gr * n + gc] = acc;
  }
}

// Thread (ty, tx) = (tid / 8, tid % 8) computes rows row0 + ty + 8 i and columns col0 + tx + 8 j, i, j < 4: per
// slab step it loads 4 A values (a warp covers 4 distinct rows in 4 banks: broadcast) and 4 B values (8 consecutive
// words per warp) into registers and issues 16 multiply-adds from them, 8 shared loads instead of 32.
__global__ void __launch_bounds__(kMicroThreads, 16) matmul_register_micro_tile(float* __restrict__ c,
                                                                            const float* __restrict__ a,
                                                                            const float* __restrict__ b, int64_t m,
                                                                            int64_t k, int64_t n) {
  __shared__ float a_tile[kTile][kPitch];
  __shared__ float b_tile[kTile][kTile];
  constexpr int kSide = kTile / kMicro;  // 8 threads per side
  const int tx = threadIdx.x % kSide;
  const int ty = threadIdx.x / kSide;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kTile;
  float acc[kMicro][kMicro] = {};
  for (int64_t k0 = 0; k0 < k; k0 += kTile) {
    load_slabs<kMicroThreads>(a_tile, b_tile, a, b, m, k, n, row0, col0, k0);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTile; ++kk) {
      float a_frag[kMicro];
      float b_frag[kMicro];
#pragma unroll
      for (int i = 0; i < kMicro; ++i) {
        a_frag[i] = a_tile[ty + kSide * i][kk];
        b_frag[i] = b_tile[kk][tx + kSide * i];
      }
#pragma unroll
      for (int i = 0; i < kMicro; ++i) {
#pragma unroll
        for (int j = 0; j < kMicro; ++j) {
          acc[i][j] = fmaf(a_frag[i], b_frag[j], acc[i][j]);
        }
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
    const int64_t gr = row0 + ty + kSide * i;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      const int64_t gc = col0 + tx + kSide * j;
      if (gr < m && gc < n) {
        c[gr * n + gc] = acc[i][j];
      }
    }
  }
}

// Both arms cover the output with the same grid of 32 x 32 tiles; only the kernel and its block size differ.
template <class Kernel>
int launch(Kernel kernel, int threads, float* c, const float* a, const float* b, int64_t m, int64_t k, int64_t n,
           cudaStream_t stream) {
  if (m <= 0 || n <= 0) {
    return 0;
  }
  const int64_t gx = (n + kTile - 1) / kTile, gy = (m + kTile - 1) / kTile;
  if (gx > 0x7fffffff || gy > 65535) {
    return static_cast<int>(cudaErrorInvalidConfiguration);
  }
  kernel<<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), threads, 0, stream>>>(c, a, b, m, k, n);
  AIPERF_RETURN_LAUNCH_ERROR();
}

}  // namespace

AIPERF_EXPORT int matmul_shared_one_output(float* c, const float* a, const float* b, int64_t m, int64_t k, int64_t n,
                                           cudaStream_t stream) {
  return launch(matmul_one_output_per_thread, kSharedThreads, c, a, b, m, k, n, stream);
}

AIPERF_EXPORT int matmul_register_tiled(float* c, const float* a, const float* b, int64_t m, int64_t k, int64_t n,
                                        cudaStream_t stream) {
  return launch(matmul_register_micro_tile, kMicroThreads, c, a, b, m, k, n, stream);
}
