// out (cols x rows) = transpose of in (rows x cols): naive vs 64x64 shared-memory tiles padded to 65 columns.
// See tiled_transpose.py for the math.
#include "aiperf.cuh"

namespace {

constexpr int kTile = 64;
constexpr int kBlockRows = 8;  // a 64 x 8 block moves a 64 x 64 tile, eight elements per thread
constexpr int64_t kMaxGridY = 65535;

// ---------------------------------------------------------------------------------------------- kernels

// Coalesced reads along a row of `in`; each warp's 32 writes land `rows` floats apart in `out`. Same 64 x 8 block
// as the tiled kernel, so only the staging differs.
__global__ __launch_bounds__(kTile * kBlockRows) void transpose_naive(float* __restrict__ out,
                                                                      const float* __restrict__ in, int64_t rows,
                                                                      int64_t cols) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kTile + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kTile + threadIdx.y;
#pragma unroll
  for (int j = 0; j < kTile; j += kBlockRows) {
    const int64_t r = r0 + j;
    if (r < rows && c < cols) out[c * rows + r] = in[r * cols + c];
  }
}

// Read a 64 x 64 tile with coalesced rows into shared memory, write it back with coalesced rows of `out`. The
// 65-float row pitch puts the 32 elements a warp reads from a tile column in 32 different banks, so the column
// reads are conflict-free (a 64-float pitch would put them all in one bank: a 32-way conflict). A 64-wide tile
// writes 256-byte row segments of `out` instead of 128-byte ones, which HBM takes more efficiently.
__global__ __launch_bounds__(kTile * kBlockRows) void transpose_tiled_padded(float* __restrict__ out,
                                                                             const float* __restrict__ in,
                                                                             int64_t rows, int64_t cols) {
  __shared__ float tile[kTile][kTile + 1];
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kTile, row0 = static_cast<int64_t>(blockIdx.y) * kTile;
#pragma unroll
  for (int j = 0; j < kTile; j += kBlockRows) {
    const int64_t r = row0 + threadIdx.y + j, c = col0 + threadIdx.x;
    if (r < rows && c < cols) tile[threadIdx.y + j][threadIdx.x] = in[r * cols + c];
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < kTile; j += kBlockRows) {
    const int64_t out_row = col0 + threadIdx.y + j, out_col = row0 + threadIdx.x;
    if (out_row < cols && out_col < rows) out[out_row * rows + out_col] = tile[threadIdx.x][threadIdx.y + j];
  }
}

template <class Kernel>
int launch(Kernel kernel, float* out, const float* in, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return 0;
  const int64_t grid_x = (cols + kTile - 1) / kTile, grid_y = (rows + kTile - 1) / kTile;
  if (grid_y > kMaxGridY) return static_cast<int>(cudaErrorInvalidConfiguration);
  kernel<<<dim3(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y)), dim3(kTile, kBlockRows), 0, stream>>>(
      out, in, rows, cols);
  AIPERF_RETURN_LAUNCH_ERROR();
}

}  // namespace

// ---------------------------------------------------------------------------------------------- launchers

AIPERF_EXPORT int transpose_simple(float* out, const float* in, int64_t rows, int64_t cols, cudaStream_t stream) {
  return launch(transpose_naive, out, in, rows, cols, stream);
}

AIPERF_EXPORT int transpose_tiled(float* out, const float* in, int64_t rows, int64_t cols, cudaStream_t stream) {
  return launch(transpose_tiled_padded, out, in, rows, cols, stream);
}
