// Per-row logsumexp over wide rows, each row split across kSplits CTAs: the CTAs' (max, sum of exp) partials
// are combined by a second kernel through global memory (two-pass) vs by rank 0 of a thread block cluster
// reading its peers' shared memory (DSMEM, one kernel). See dsmem_cluster_reduction.py for the math.
//
// Both arms run the same per-CTA code (cta_partial) on the same grid (kSplits, rows) and combine the kSplits
// partials of a row in the same order with the same function, so their outputs are bitwise identical.
#include <cooperative_groups.h>

#include "aiperf.cuh"

namespace cg = cooperative_groups;

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kSplits = 8;  // CTAs per row; also the cluster size (8 is the portable maximum)
constexpr int64_t kMaxGridY = 65535;

// A running logsumexp: m = max seen, s = sum of exp(x - m). The empty state is (-inf, 0).
struct Lse {
  float m;
  float s;
};

// exp(x - m) for m >= x, with exp(-inf - m) = 0 even when m is -inf (a masked logit, or an empty partial).
__device__ __forceinline__ float exp_shift(float x, float m) { return x == -INFINITY ? 0.0f : __expf(x - m); }

__device__ __forceinline__ Lse combine(Lse a, Lse b) {
  const float m = fmaxf(a.m, b.m);
  return {m, a.s * exp_shift(a.m, m) + b.s * exp_shift(b.m, m)};
}

__device__ __forceinline__ void push4(Lse& acc, float4 v) {
  const float m = fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w));
  if (m > acc.m) {
    acc.s *= exp_shift(acc.m, m);
    acc.m = m;
  }
  acc.s += exp_shift(v.x, acc.m) + exp_shift(v.y, acc.m) + exp_shift(v.z, acc.m) + exp_shift(v.w, acc.m);
}

__device__ __forceinline__ void push1(Lse& acc, float x) {
  if (x > acc.m) {
    acc.s *= exp_shift(acc.m, x);
    acc.m = x;
  }
  acc.s += exp_shift(x, acc.m);
}

__device__ __forceinline__ Lse warp_combine(Lse v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    v = combine(v, {__shfl_down_sync(0xffffffffu, v.m, offset), __shfl_down_sync(0xffffffffu, v.s, offset)});
  }
  return v;
}

// This CTA's partial over columns [split * chunk, min((split + 1) * chunk, cols)) of row blockIdx.y; valid in
// thread 0. chunk is a multiple of 4, so with cols % 4 == 0 and a 16-byte-aligned x every chunk is float4-aligned.
// Four independent 16-byte loads are issued before any is consumed, to keep enough bytes in flight for HBM.
__device__ Lse cta_partial(const float* __restrict__ x, int64_t cols, int64_t chunk, bool vec) {
  __shared__ Lse warp_partials[kWarps];
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * chunk;
  const int64_t end = begin + chunk < cols ? begin + chunk : cols;
  const float* row = x + static_cast<int64_t>(blockIdx.y) * cols;
  Lse acc{-INFINITY, 0.0f};
  if (begin < end) {
    if (vec) {
      const float4* p = reinterpret_cast<const float4*>(row + begin);
      const int64_t n4 = (end - begin) / 4;
      int64_t i = threadIdx.x;
      for (; i + 3 * kThreads < n4; i += 4 * kThreads) {
        const float4 v0 = p[i], v1 = p[i + kThreads], v2 = p[i + 2 * kThreads], v3 = p[i + 3 * kThreads];
        push4(acc, v0);
        push4(acc, v1);
        push4(acc, v2);
        push4(acc, v3);
      }
      for (; i < n4; i += kThreads) push4(acc, p[i]);
    } else {
      for (int64_t c = begin + threadIdx.x; c < end; c += kThreads) push1(acc, row[c]);
    }
  }
  acc = warp_combine(acc);
  if (threadIdx.x % 32 == 0) warp_partials[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x < 32) {
    acc = warp_combine(threadIdx.x < kWarps ? warp_partials[threadIdx.x] : Lse{-INFINITY, 0.0f});
  }
  return acc;
}

__device__ __forceinline__ float finish(Lse v) { return v.m + logf(v.s); }

// ---------------------------------------------------------------------------------------------- kernels

// Pass 1 of 2: every CTA writes its partial to global memory.
__global__ __launch_bounds__(kThreads) void lse_partials_kernel(Lse* __restrict__ partials,
                                                                const float* __restrict__ x, int64_t cols,
                                                                int64_t chunk, bool vec) {
  const Lse acc = cta_partial(x, cols, chunk, vec);
  if (threadIdx.x == 0) partials[static_cast<int64_t>(blockIdx.y) * kSplits + blockIdx.x] = acc;
}

// Pass 2 of 2: one thread per row combines the row's kSplits partials in rank order.
__global__ __launch_bounds__(kThreads) void lse_finish_kernel(float* __restrict__ out,
                                                              const Lse* __restrict__ partials, int64_t rows) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (r >= rows) return;
  Lse acc = partials[r * kSplits];
  for (int k = 1; k < kSplits; ++k) acc = combine(acc, partials[r * kSplits + k]);
  out[r] = finish(acc);
}

// One kernel: the kSplits CTAs of a row form a cluster. Each leaves its partial in its own shared memory; after
// the first cluster barrier (release/acquire across the cluster) rank 0 reads all of them through DSMEM, in rank
// order, and writes the row's result. The second barrier keeps every CTA, and so its shared memory, alive until
// rank 0 has finished reading.
__global__ void __cluster_dims__(kSplits, 1, 1) __launch_bounds__(kThreads)
    lse_cluster_kernel(float* __restrict__ out, const float* __restrict__ x, int64_t cols, int64_t chunk, bool vec) {
  __shared__ Lse partial;
  cg::cluster_group cluster = cg::this_cluster();
  const Lse acc = cta_partial(x, cols, chunk, vec);
  if (threadIdx.x == 0) partial = acc;
  cluster.sync();
  if (cluster.block_rank() == 0 && threadIdx.x == 0) {
    Lse total = *cluster.map_shared_rank(&partial, 0);
    for (unsigned k = 1; k < kSplits; ++k) total = combine(total, *cluster.map_shared_rank(&partial, k));
    out[blockIdx.y] = finish(total);
  }
  cluster.sync();
}

int64_t chunk_of(int64_t cols) {
  const int64_t chunk = (cols + kSplits - 1) / kSplits;
  return (chunk + 3) / 4 * 4;
}

bool vectorizable(const float* x, int64_t cols) {
  return cols % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------- launchers

// partials: rows * kSplits Lse pairs (rows * kSplits * 2 floats) of scratch.
AIPERF_EXPORT int lse_two_pass(float* out, float* partials, const float* x, int64_t rows, int64_t cols,
                               cudaStream_t stream) {
  if (rows <= 0) return 0;
  if (rows > kMaxGridY || cols <= 0) return static_cast<int>(cudaErrorInvalidValue);
  Lse* pairs = reinterpret_cast<Lse*>(partials);
  lse_partials_kernel<<<dim3(kSplits, static_cast<unsigned>(rows)), kThreads, 0, stream>>>(
      pairs, x, cols, chunk_of(cols), vectorizable(x, cols));
  if (const cudaError_t err = cudaGetLastError(); err != cudaSuccess) return static_cast<int>(err);
  lse_finish_kernel<<<static_cast<unsigned>((rows + kThreads - 1) / kThreads), kThreads, 0, stream>>>(out, pairs,
                                                                                                      rows);
  AIPERF_RETURN_LAUNCH_ERROR();
}

AIPERF_EXPORT int lse_cluster(float* out, const float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0) return 0;
  if (rows > kMaxGridY || cols <= 0) return static_cast<int>(cudaErrorInvalidValue);
  lse_cluster_kernel<<<dim3(kSplits, static_cast<unsigned>(rows)), kThreads, 0, stream>>>(out, x, cols,
                                                                                         chunk_of(cols),
                                                                                         vectorizable(x, cols));
  AIPERF_RETURN_LAUNCH_ERROR();
}
