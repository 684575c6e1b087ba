// Three-pass softmax over long rows, launched over all rows at once or over L2-sized groups of rows
// (see l2_blocking.py for the math). The kernels are the same for both arms; only the loop order differs.
#include <cmath>

#include "aiperf.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 16;
constexpr int kChunk = kThreads * kPerThread;  // columns of one row reduced or written by one block
constexpr int kWarps = kThreads / 32;
constexpr int kMaxGridY = 65535;

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// Every thread gets the block-wide result. Safe to call back to back: it synchronizes before reusing its scratch.
template <class Op>
__device__ float block_reduce(float v, float identity, Op op) {
  __shared__ float scratch[kWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < kWarps ? scratch[lane] : identity;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// The row's statistic from the per-chunk partials written by the previous pass.
template <class Op>
__device__ float row_total(const float* partials, int64_t n_chunks, float identity, Op op) {
  float v = identity;
  for (int64_t j = threadIdx.x; j < n_chunks; j += kThreads) v = op(v, partials[j]);
  return block_reduce(v, identity, op);
}

// ---------------------------------------------------------------------------------------------- kernels
// Block (chunk, row - row0) of every pass covers columns [chunk * kChunk, chunk * kChunk + kChunk) of its row.

__global__ __launch_bounds__(kThreads) void pass_max(float* __restrict__ part_max, const float* __restrict__ x,
                                                     int64_t cols, int64_t n_chunks, int64_t row0) {
  const int64_t row = row0 + blockIdx.y, c0 = static_cast<int64_t>(blockIdx.x) * kChunk + threadIdx.x;
  const float* xr = x + row * cols;
  float m = -INFINITY;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t c = c0 + k * kThreads;
    if (c < cols) m = fmaxf(m, xr[c]);
  }
  m = block_reduce(m, -INFINITY, MaxOp());
  if (threadIdx.x == 0) part_max[row * n_chunks + blockIdx.x] = m;
}

__global__ __launch_bounds__(kThreads) void pass_sum_exp(float* __restrict__ part_sum,
                                                         const float* __restrict__ part_max,
                                                         const float* __restrict__ x, int64_t cols, int64_t n_chunks,
                                                         int64_t row0) {
  const int64_t row = row0 + blockIdx.y, c0 = static_cast<int64_t>(blockIdx.x) * kChunk + threadIdx.x;
  const float m = row_total(part_max + row * n_chunks, n_chunks, -INFINITY, MaxOp());
  const float* xr = x + row * cols;
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t c = c0 + k * kThreads;
    if (c < cols) s += expf(xr[c] - m);
  }
  s = block_reduce(s, 0.0f, SumOp());
  if (threadIdx.x == 0) part_sum[row * n_chunks + blockIdx.x] = s;
}

__global__ __launch_bounds__(kThreads) void pass_normalize(float* __restrict__ y, const float* __restrict__ part_sum,
                                                           const float* __restrict__ part_max,
                                                           const float* __restrict__ x, int64_t cols,
                                                           int64_t n_chunks, int64_t row0) {
  const int64_t row = row0 + blockIdx.y, c0 = static_cast<int64_t>(blockIdx.x) * kChunk + threadIdx.x;
  const float m = row_total(part_max + row * n_chunks, n_chunks, -INFINITY, MaxOp());
  const float inv = 1.0f / row_total(part_sum + row * n_chunks, n_chunks, 0.0f, SumOp());
  const float* xr = x + row * cols;
  float* yr = y + row * cols;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t c = c0 + k * kThreads;
    if (c < cols) yr[c] = expf(xr[c] - m) * inv;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------- launcher

// softmax(x) over each row into y. The three passes run over `group_rows` rows at a time: all rows at once is the
// baseline's order (each pass streams the whole tensor), an L2-sized group the blocked order (passes 2 and 3 re-read
// the group from L2). part_max and part_sum hold rows * ceil(cols / kChunk) floats each.
AIPERF_EXPORT int softmax_three_pass(float* y, const float* x, float* part_max, float* part_sum, int64_t rows,
                                     int64_t cols, int64_t group_rows, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return 0;
  const int64_t n_chunks = (cols + kChunk - 1) / kChunk;
  if (group_rows < 1) group_rows = 1;
  if (group_rows > kMaxGridY) group_rows = kMaxGridY;
  for (int64_t row0 = 0; row0 < rows; row0 += group_rows) {
    const int64_t count = rows - row0 < group_rows ? rows - row0 : group_rows;
    const dim3 grid(static_cast<unsigned>(n_chunks), static_cast<unsigned>(count));
    pass_max<<<grid, kThreads, 0, stream>>>(part_max, x, cols, n_chunks, row0);
    pass_sum_exp<<<grid, kThreads, 0, stream>>>(part_sum, part_max, x, cols, n_chunks, row0);
    pass_normalize<<<grid, kThreads, 0, stream>>>(y, part_sum, part_max, x, cols, n_chunks, row0);
  }
  AIPERF_RETURN_LAUNCH_ERROR();
}
