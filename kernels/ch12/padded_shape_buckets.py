"""Padded shape buckets: a serving loop whose batch size changes every step, eager at each exact size vs padded up to
the next of a few graphs captured ahead of time.

A graph replays fixed shapes, so a server whose batch size changes every decode step (requests arrive and finish)
cannot replay one graph. This pair runs a window of decode steps, each at its own batch size:

- Baseline: every step in eager PyTorch at its exact batch size (``cuda_graph_replay.decode_step``, ~1,016
  launches), then the steps' outputs concatenated. No padding waste; bound by the host's dispatch rate, as in
  ``cuda_graph_replay``.
- Optimized: vLLM's scheme. Graphs for the buckets 1, 2, 4 and every multiple of 8 up to the largest batch are
  captured on first use of the inputs (outside the timed region, as a server does at startup), all in one shared
  memory pool, reading a static input buffer. Per step: copy the step's states into the buffer's first rows,
  replay the smallest bucket that fits, copy the first rows of its static output into the result. The padded rows
  compute throwaway values (rows are independent all through the model). Bound by the kernels, plus the padding.

Why not capture one graph per exact shape? If such a cache persists across calls, after warm-up it holds a graph
for every size it met and replays without padding: it beats the buckets by the padding (~15% here), at the price of
one capture per distinct size (~1,000 kernels: tens of ms each) and one graph per size, which is why servers
bucket. If the cache did not persist, the timed call would mostly measure capture time, against an arm that paid
its captures outside the timing: not a fair pair. So the honest timed pair is eager vs buckets, and the exact-shape
graph is the ceiling the buckets approach.

Shape ``(layers, steps, max_batch, cache_len)`` over Qwen2.5-0.5B's dimensions, bf16; each step's batch size is
drawn uniformly from 1..max_batch (seeded), and request r of every step attends over row r of one KV cache.
Timing shape (24, 16, 32, 512): 16 decode steps of the 24-layer model at batch sizes 1-32, 512 cached tokens.

Napkin math on an H100 SXM (bf16), per step (``cuda_graph_replay`` has the per-kernel numbers):
- buckets 1, 2, 4, 8, 16, 24, 32: over b uniform in 1..32 the padding adds 2.8 rows to a mean of 16.5 (+17%).
- kernel time at batch b: ~1.9 ms (weights and small kernels, nearly flat in b) + ~35 us per request (its KV
  cache concatenated, repeated to 14 heads and read by SDPA: ~4.4 MB per layer): ~2.5 ms at b = 16.5.
- baseline: 1,016 dispatches at ~7-12 us = ~7-12 ms per step, the kernels hidden under the host time; 16 steps +
  one concatenation: ~150 ms.
- optimized: ~25 us of host per step (two copies and a replay) ahead of the device; the device runs the bucket's
  kernels, ~2.6 ms at the mean bucket of 19.3, plus ~0.5-1 ms of inter-kernel gaps: ~3.3 ms per step, ~53 ms.
- predicted speedup: ~150 / ~53 = ~2.8x (2.3-3.5x with the host's dispatch rate); ~15% below what exact-shape
  graphs would give.

Measured (H100 VM, 2026-11-21, three processes at commits c0a8b42, 401dac0, 6242554): 328, 258 and 298 ms vs 64.6,
64.6 and 64.1 ms: 5.08x, 3.99x and 4.65x (wide intervals, [3.55, 6.20] at the widest), above the predicted ~2.8x.
Eager dispatch cost ~16-20 us per kernel (derived: 258-328 ms / (16 x 1,016)), not the 7-12 us assumed, close to the
~15.5-21 us that ``cuda_graph_replay`` measured; the spread between processes is likely that host rate varying. The
buckets took ~4.0 ms per step (derived: 64.6 / 16), above the ~3.3 ms estimated: likely more kernel time at the mean
bucket than assumed (not profiled).
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import normal, seeded
from kernels.ch12.capture import capture, pointer_key
from kernels.ch12.cuda_graph_replay import HIDDEN, KV_HEADS, HEAD_DIM, decode_step, model_weights, rotary
from kernels.ch12.cuda_graph_replay import work as step_work
from pytest_aiperf import Work

_BUCKETED: dict[tuple[Any, ...], tuple[torch.Tensor, dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]]]] = {}


def buckets(max_batch: int) -> list[int]:
    """vLLM's capture sizes: 1, 2, 4, then multiples of 8, up to and including ``max_batch``."""
    sizes = [b for b in (1, 2, 4, *range(8, max_batch, 8)) if b < max_batch]
    return [*sizes, max_batch]


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """Per-step batch sizes (a CPU int64 tensor), every step's new-token states (steps, max_batch, hidden), rotary
    cos/sin at position cache_len, the KV cache for max_batch requests, then the model's weights."""
    layers, steps, max_batch, cache_len = shape
    gen = seeded(seed)
    sizes = torch.randint(1, max_batch + 1, (steps,), generator=gen)
    x = normal(gen, (steps, max_batch, HIDDEN), dtype, device)
    k_cache = normal(gen, (layers, max_batch, KV_HEADS, cache_len, HEAD_DIM), dtype, device)
    v_cache = normal(gen, (layers, max_batch, KV_HEADS, cache_len, HEAD_DIM), dtype, device)
    return (sizes, x, *rotary(cache_len, dtype, device), k_cache, v_cache, *model_weights(gen, layers, dtype, device))


def baseline_eager_exact_shapes(sizes: torch.Tensor, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                                k_cache: torch.Tensor, v_cache: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
    """Each step eagerly at its own batch size; the outputs of all steps stacked along the batch axis."""
    return torch.cat([decode_step(x[step, :b], cos, sin, k_cache[:, :b], v_cache[:, :b], *weights)
                      for step, b in enumerate(sizes.tolist())])


def _capture_buckets(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_cache: torch.Tensor,
                     v_cache: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[int, Any]]:
    """One graph per bucket, largest first into one memory pool (the smaller graphs reuse the largest one's blocks),
    each reading the first rows of one static input buffer."""
    static_x = torch.zeros((x.shape[1], HIDDEN), dtype=x.dtype, device=x.device)
    pool = torch.cuda.graph_pool_handle()
    graphs = {}
    for b in sorted(buckets(x.shape[1]), reverse=True):
        graphs[b] = capture(decode_step, (static_x[:b], cos, sin, k_cache[:, :b], v_cache[:, :b], *weights), pool)
    return static_x, graphs


def optimized_padded_bucket_graphs(sizes: torch.Tensor, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                                   k_cache: torch.Tensor, v_cache: torch.Tensor,
                                   *weights: torch.Tensor) -> torch.Tensor:
    """Each step padded up to the next captured bucket: copy in, replay, copy the real rows out."""
    key = pointer_key((x, cos, sin, k_cache, v_cache, *weights))
    if key not in _BUCKETED:
        _BUCKETED[key] = _capture_buckets(x, cos, sin, k_cache, v_cache, weights)
    static_x, graphs = _BUCKETED[key]
    steps = sizes.tolist()
    out = torch.empty((sum(steps), HIDDEN), dtype=x.dtype, device=x.device)
    sizes_captured = sorted(graphs)
    row = 0
    for step, b in enumerate(steps):
        bucket = next(size for size in sizes_captured if size >= b)
        static_x[:b].copy_(x[step, :b])
        graph, static_out = graphs[bucket]
        graph.replay()
        out[row:row + b].copy_(static_out[:b])
        row += b
    return out


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Per step, the weights once and the KV cache of its requests once (at the expected batch size
    (max_batch + 1) / 2, as the sizes are drawn uniformly); tokens = the expected number of requests served."""
    layers, steps, max_batch, cache_len = shape
    step = step_work((layers, 1, cache_len), dtype)
    per_request = step_work((layers, 2, cache_len), dtype)
    mean_batch = (max_batch + 1) / 2
    bytes_per_step = step.bytes + (mean_batch - 1) * (per_request.bytes - step.bytes)
    flops_per_step = mean_batch * step.flops
    return Work(bytes=float(steps * bytes_per_step), flops=float(steps * flops_per_step),
                items=float(steps * mean_batch), item_name="tokens")
