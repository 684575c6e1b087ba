// Matrix transpose through a 32 x 32 shared-memory tile: the tile read down a column hits one bank 32 times
// (row stride 32 words) unless each tile row is padded by one word (row stride 33 words: 32 different banks).
//
// Both kernels read the input and write the output fully coalesced; only the tile's row stride differs.
// A block of 32 x 8 threads moves one 32 x 32 tile, four elements per thread.
#include "aiperf.cuh"

namespace {

constexpr int kTile = 32;
constexpr int kRowsPerPass = 8;

template <int kPad>
__global__ void transpose_tile(float* __restrict__ out, const float* __restrict__ in, int64_t rows, int64_t cols) {
  __shared__ float tile[kTile][kTile + kPad];
  const int64_t tile_row = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t tile_col = static_cast<int64_t>(blockIdx.x) * kTile;

  const int64_t in_col = tile_col + threadIdx.x;
  for (int j = threadIdx.y; j < kTile; j += kRowsPerPass) {
    const int64_t in_row = tile_row + j;
    if (in_row < rows && in_col < cols) {
      tile[j][threadIdx.x] = in[in_row * cols + in_col];
    }
  }
  __syncthreads();

  // out is (cols, rows): out[c][r] = in[r][c]. Lane x writes output column tile_row + x, reading tile column x.
  const int64_t out_col = tile_row + threadIdx.x;
  for (int j = threadIdx.y; j < kTile; j += kRowsPerPass) {
    const int64_t out_row = tile_col + j;
    if (out_row < cols && out_col < rows) {
      out[out_row * rows + out_col] = tile[threadIdx.x][j];
    }
  }
}

template <int kPad>
int launch(float* out, const float* in, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) {
    return 0;
  }
  const int64_t grid_x = (cols + kTile - 1) / kTile;
  const int64_t grid_y = (rows + kTile - 1) / kTile;
  if (grid_x > 0x7fffffff || grid_y > 65535) {
    return static_cast<int>(cudaErrorInvalidConfiguration);
  }
  const dim3 grid(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y));
  transpose_tile<kPad><<<grid, dim3(kTile, kRowsPerPass), 0, stream>>>(out, in, rows, cols);
  AIPERF_RETURN_LAUNCH_ERROR();
}

}  // namespace

AIPERF_EXPORT int transpose_unpadded(float* out, const float* in, int64_t rows, int64_t cols, cudaStream_t stream) {
  return launch<0>(out, in, rows, cols, stream);
}

AIPERF_EXPORT int transpose_padded(float* out, const float* in, int64_t rows, int64_t cols, cudaStream_t stream) {
  return launch<1>(out, in, rows, cols, stream);
}
