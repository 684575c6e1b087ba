"""Batched matmul: per-head attention scores, one small matmul per head vs one batched matmul.

- Baseline: a Python loop issues one ``q[h] @ k[h].T`` per (sequence, head) and stacks the results;
  launch-bound (each matmul is a few microseconds of GPU work behind a ~5 us launch).
- Optimized: one ``torch.matmul`` on the stacked (heads, queries, head_dim) tensors, a single batched
  cuBLAS launch; still launch-latency-bound at this size, but for one launch instead of 65.

Shape ``(heads, queries, head_dim, keys)``. Timing shape (64, 128, 64, 128): GPT-2-medium attention
(16 heads, head_dim 64) over 4 sequences of 128 tokens, i.e. 64 score matrices of 128 x 128.

Napkin math on an H100 (fp32, TF32 off):
- work: 2 * 64 * 128 * 64 * 128 = 134 MFLOP and 4 B * 64 * (128*64 + 128*64 + 128*128) = 8.4 MB, which is
  ~2.7 us at ~50 TFLOP/s or ~2.8 us at ~3.0 TB/s: the whole computation is a few microseconds of GPU time.
- baseline: 64 matmul launches + 1 stack (concatenate) launch = 65 launches at ~4-6 us each = ~260-390 us;
  the GPU idles between launches, so the time is the host's launch rate. cuBLAS may also split each small
  matmul into a split-K GEMM plus a reduce kernel (seen on an H100: 129 kernels, ~9 us of GPU time per head),
  which only makes the loop slower.
- optimized: 1 launch (~5 us host-to-GPU latency) + ~3-5 us of kernel = ~8-10 us.
- predicted speedup: ~325 us / ~10 us = ~30x (25-50x depending on the host's launch rate).

The lesson is the launch path, so the case times host dispatch (``host_dispatch="timed"``): both arms pay
their launches inside the events, the optimized arm its one launch too.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries (heads, queries, head_dim) and keys (heads, keys, head_dim), unit-normal like projected activations."""
    heads, queries, head_dim, keys = shape
    gen = seeded(seed)
    q = normal(gen, (heads, queries, head_dim), dtype, device)
    k = normal(gen, (heads, keys, head_dim), dtype, device)
    return q, k


def baseline_loop_of_matmuls(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """One matmul per head in a Python loop, then ``torch.stack``: one kernel launch per head plus one."""
    return torch.stack([q[h] @ k[h].transpose(0, 1) for h in range(q.shape[0])])


def optimized_one_bmm(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """All heads in one batched matmul: a single strided-batched GEMM launch (the transpose is a view)."""
    return torch.matmul(q, k.transpose(-2, -1))


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read q and k once, write the scores once; 2 flops per multiply-add."""
    heads, queries, head_dim, keys = shape
    return Work(bytes=float(itemsize(dtype) * heads * (queries * head_dim + keys * head_dim + queries * keys)),
                flops=float(2 * heads * queries * head_dim * keys))

