// fp32 C = A @ B on the CUDA cores (A is m x k, B is k x n, all row-major): one output per thread reading its
// operands from global memory vs 64 x 64 block tiles staged through shared memory, 4 x 4 outputs per thread.
//
// Both sum the k products in ascending order with fmaf, so they return bitwise identical results. Neither is
// meant to compete with cuBLAS: the pair is about data reuse.
#include "aiperf.cuh"

namespace {

constexpr int kNaiveX = 32;
constexpr int kNaiveY = 8;

__global__ void matmul_one_output_per_thread(float* __restrict__ c, const float* __restrict__ a,
                                             const float* __restrict__ b, int64_t m, int64_t k, int64_t n) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kNaiveX + threadIdx.x;
  const int64_t row = static_cast<int64_t>(blockIdx.y) * kNaiveY + threadIdx.y;
  if (row < m && col < n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < k; ++i) {
      acc = fmaf(a[row * k + i], b[i * n + col], acc);
    }
    c[row * n + col] = acc;
  }
}

constexpr int kTileM = 64;
constexpr int kTileN = 64;
constexpr int kTileK = 16;
constexpr int kThreads = 256;  // 16 x 16 threads, each owning rows ty + 16 i and columns tx + 16 j, i, j < 4
constexpr int kMicro = 4;

__global__ void __launch_bounds__(kThreads) matmul_shared_tiles(float* __restrict__ c, const float* __restrict__ a,
                                                                const float* __restrict__ b, int64_t m, int64_t k,
                                                                int64_t n) {
  // a_tile is stored transposed (k-major) and padded by one word so the 16 k-values of a row land in 16 banks.
  __shared__ float a_tile[kTileK][kTileM + 1];
  __shared__ float b_tile[kTileK][kTileN];
  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTileM;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  float acc[kMicro][kMicro] = {};

  for (int64_t k0 = 0; k0 < k; k0 += kTileK) {
#pragma unroll
    for (int p = 0; p < kTileM * kTileK / kThreads; ++p) {
      const int e = threadIdx.x + p * kThreads;
      const int r = e / kTileK;
      const int kk = e % kTileK;
      const int64_t gr = row0 + r;
      const int64_t gk = k0 + kk;
      a_tile[kk][r] = (gr < m && gk < k) ? a[gr * k + gk] : 0.0f;
    }
#pragma unroll
    for (int p = 0; p < kTileK * kTileN / kThreads; ++p) {
      const int e = threadIdx.x + p * kThreads;
      const int kk = e / kTileN;
      const int cc = e % kTileN;
      const int64_t gk = k0 + kk;
      const int64_t gc = col0 + cc;
      b_tile[kk][cc] = (gk < k && gc < n) ? b[gk * n + gc] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      float a_frag[kMicro];
      float b_frag[kMicro];
#pragma unroll
      for (int i = 0; i < kMicro; ++i) {
        a_frag[i] = a_tile[kk][ty + 16 * i];
        b_frag[i] = b_tile[kk][tx + 16 * i];
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
    const int64_t gr = row0 + ty + 16 * i;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      const int64_t gc = col0 + tx + 16 * j;
      if (gr < m && gc < n) {
        c[gr * n + gc] = acc[i][j];
      }
    }
  }
}

bool fits(int64_t rows, int64_t cols, int tile_rows, int tile_cols, dim3* grid) {
  const int64_t gx = (cols + tile_cols - 1) / tile_cols;
  const int64_t gy = (rows + tile_rows - 1) / tile_rows;
  if (gx > 0x7fffffff || gy > 65535) {
    return false;
  }
  *grid = dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  return true;
}

}  // namespace

AIPERF_EXPORT int matmul_naive(float* c, const float* a, const float* b, int64_t m, int64_t k, int64_t n,
                               cudaStream_t stream) {
  if (m <= 0 || n <= 0) {
    return 0;
  }
  dim3 grid;
  if (!fits(m, n, kNaiveY, kNaiveX, &grid)) {
    return static_cast<int>(cudaErrorInvalidConfiguration);
  }
  matmul_one_output_per_thread<<<grid, dim3(kNaiveX, kNaiveY), 0, stream>>>(c, a, b, m, k, n);
  AIPERF_RETURN_LAUNCH_ERROR();
}

AIPERF_EXPORT int matmul_tiled(float* c, const float* a, const float* b, int64_t m, int64_t k, int64_t n,
                               cudaStream_t stream) {
  if (m <= 0 || n <= 0) {
    return 0;
  }
  dim3 grid;
  if (!fits(m, n, kTileM, kTileN, &grid)) {
    return static_cast<int>(cudaErrorInvalidConfiguration);
  }
  matmul_shared_tiles<<<grid, kThreads, 0, stream>>>(c, a, b, m, k, n);
  AIPERF_RETURN_LAUNCH_ERROR();
}
