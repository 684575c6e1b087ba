// CSR SpMV y = A x with power-law row lengths, one warp per row, on a persistent grid (#SMs x resident blocks):
// static contiguous row ranges per block vs warps pulling chunks of rows from an atomic counter. See
// persistent_work_queue.py for the math.
//
// Both kernels compute a row identically (warp_row: lane l sums entries l, l + 32, ... in order, then the same
// shuffle tree), so their outputs are bit-identical; only which warp takes which row differs.
#include "aiperf.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ void warp_row(float* __restrict__ y, const int64_t* __restrict__ row_ptr,
                                         const int* __restrict__ cols, const float* __restrict__ vals,
                                         const float* __restrict__ x, int64_t row, int lane) {
  const int64_t begin = row_ptr[row], end = row_ptr[row + 1];
  float acc = 0.0f;
  for (int64_t j = begin + lane; j < end; j += 32) acc = fmaf(vals[j], __ldg(x + cols[j]), acc);
  for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
  if (lane == 0) y[row] = acc;
}

// Block b owns rows [rows * b / B, rows * (b + 1) / B); its warps take them round-robin.
__global__ void __launch_bounds__(kThreads) spmv_static_kernel(float* __restrict__ y,
                                                               const int64_t* __restrict__ row_ptr,
                                                               const int* __restrict__ cols,
                                                               const float* __restrict__ vals,
                                                               const float* __restrict__ x, int64_t rows) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t first = rows * blockIdx.x / gridDim.x, last = rows * (blockIdx.x + 1) / gridDim.x;
  for (int64_t row = first + warp; row < last; row += kWarps) warp_row(y, row_ptr, cols, vals, x, row, lane);
}

// Each warp grabs the next `chunk` rows from the queue until it is empty. `next` is zeroed on the stream first.
__global__ void __launch_bounds__(kThreads) spmv_queue_kernel(float* __restrict__ y,
                                                              const int64_t* __restrict__ row_ptr,
                                                              const int* __restrict__ cols,
                                                              const float* __restrict__ vals,
                                                              const float* __restrict__ x, int64_t rows,
                                                              unsigned long long* __restrict__ next, int64_t chunk) {
  const int lane = threadIdx.x % 32;
  while (true) {
    unsigned long long start = 0;
    if (lane == 0) start = atomicAdd(next, static_cast<unsigned long long>(chunk));
    start = __shfl_sync(0xffffffffu, start, 0);
    if (start >= static_cast<unsigned long long>(rows)) return;
    const int64_t end = min(static_cast<int64_t>(start) + chunk, rows);
    for (int64_t row = static_cast<int64_t>(start); row < end; ++row) warp_row(y, row_ptr, cols, vals, x, row, lane);
  }
}

// Grid of one full wave: every SM holds as many blocks as fit, and no block waits for another to retire.
template <class Kernel>
cudaError_t persistent_grid(Kernel kernel, unsigned* grid) {
  int device = 0, sms = 0, per_sm = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err == cudaSuccess) err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0);
  *grid = static_cast<unsigned>(sms * (per_sm > 0 ? per_sm : 1));
  return err;
}

}  // namespace

AIPERF_EXPORT int spmv_static_rows(float* y, const int64_t* row_ptr, const int* cols, const float* vals,
                                   const float* x, int64_t rows, cudaStream_t stream) {
  if (rows <= 0) return 0;
  unsigned grid = 0;
  if (const cudaError_t err = persistent_grid(spmv_static_kernel, &grid)) return static_cast<int>(err);
  spmv_static_kernel<<<grid, kThreads, 0, stream>>>(y, row_ptr, cols, vals, x, rows);
  AIPERF_RETURN_LAUNCH_ERROR();
}

AIPERF_EXPORT int spmv_row_queue(float* y, const int64_t* row_ptr, const int* cols, const float* vals,
                                 const float* x, int64_t rows, unsigned long long* counter, int64_t chunk,
                                 cudaStream_t stream) {
  if (rows <= 0) return 0;
  if (chunk <= 0) return static_cast<int>(cudaErrorInvalidValue);
  unsigned grid = 0;
  if (const cudaError_t err = persistent_grid(spmv_queue_kernel, &grid)) return static_cast<int>(err);
  if (const cudaError_t err = cudaMemsetAsync(counter, 0, sizeof(unsigned long long), stream)) {
    return static_cast<int>(err);
  }
  spmv_queue_kernel<<<grid, kThreads, 0, stream>>>(y, row_ptr, cols, vals, x, rows, counter, chunk);
  AIPERF_RETURN_LAUNCH_ERROR();
}
