"""MoE routing: the eager router and the sort that feeds a grouped GEMM vs two Triton kernels and no host sync.

- Baseline: what ``moe_grouped_gemm``'s arms feed on, written as Hugging Face and torch users write it: softmax in
  fp32, ``topk``, renormalize, flatten, a stable ``argsort`` by expert and ``bincount`` for the per-expert counts:
  ~8 launches, and ``bincount`` reads its input's maximum back to size its output (a host sync on CUDA).
- Optimized: ``topk_softmax_kernel``, one program per block of tokens: the row's top-k by repeated max (ties to
  the lower expert index), twice (the first pass sums the softmax's denominator, the second writes), giving the
  softmax over the chosen logits (equal to the full softmax renormalized over
  them); ``expert_permutation_kernel``, one program per expert: its count, its offset (the routed rows of lower
  experts) and the positions of its rows, in order, by a prefix sum. Two launches, no sync.
- Mechanism: launches and the sync, not bytes: the logits of 4096 tokens x 128 experts are 2 MB.

Outputs, the same in both arms: the renormalized weights (tokens, top_k) fp32 and the expert ids (tokens, top_k),
best first; the permutation of the flattened (token, slot) pairs sorted by expert, ties in (token, slot) order (a
stable sort); and each expert's count. Ids, permutation and counts must be equal exactly. Tie rule: equal logits go
to the lower expert index first (``torch.topk`` does not document its order; the inputs' continuous logits tie with
probability ~0, and ``pytest_aiperf/tests/kernels/test_moe.py`` checks the kernels' rule on tied logits).

Shape ``(tokens, experts, top_k)``, fp32 logits. Timing shapes: (64, 128, 8), Qwen3-30B-A3B's router at a decode
batch of 64, and (4096, 128, 8), the same over a 4096-token prefill chunk.

Napkin math on an H100 SXM (launch ~5-15 us eager, a sync ~10-20 us; H200 the same: host-bound):
- baseline: ~8 launches + the bincount's sync + its second launch: ~60-100 us at both sizes (at 4096 tokens the
  argsort of 32,768 ids and the softmax over 2 MB add ~20-40 us of GPU time).
- optimized at 64 tokens: two launches, ~10-15 us; at 4096 tokens, the top-k kernel reads 2 MB (~5 us) and the
  permutation's 128 programs each scan the 32,768 ids twice from L2 (~10-20 us): ~20-35 us.
- predicted speedup: 3-6x at 64 tokens, 2.5-4x at 4096, on H100 and H200.
- floor: ``min_speedup`` 1.75 (70% of the low end, 2.5x).

Precision: the weights are fp32 softmaxes over the same logits (within ~1e-7 relative of each other); the default
fp32 bound holds.

Measured once on an H200 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording):
4096x128x8: 252 us -> 137 us, 1.83x [1.80, 1.87]; 64x128x8: 229 us -> 97 us, 2.36x [2.33, 2.49].
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from kernels import seeded, torch_dtype
from kernels.ch17.moe import route, router_logits
from pytest_aiperf import Work

BLOCK_TOKENS = 16
BLOCK_IDS = 1024


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Router logits (tokens, experts) in ``dtype``, unevenly loaded (``moe.router_logits``), and ``top_k``."""
    tokens, experts, top_k = shape
    return router_logits(seeded(seed), tokens, experts, device).to(torch_dtype(dtype)), top_k


def baseline_eager_router(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, ...]:
    """Softmax, top-k, renormalize; stable argsort by expert; bincount."""
    weights, ids = route(logits, top_k)
    flat = ids.flatten()
    return weights, ids, torch.argsort(flat, stable=True), torch.bincount(flat, minlength=logits.shape[1])


@triton.jit
def topk_softmax_kernel(logits_ptr, weights_ptr, ids_ptr, tokens, experts, stride, TOP_K: tl.constexpr,
                        BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_E)
    live = rows < tokens
    safe = tl.minimum(rows, tokens - 1)
    values = tl.load(logits_ptr + safe[:, None] * stride + cols[None, :], mask=cols[None, :] < experts,
                     other=float("-inf")).to(tl.float32)
    best = tl.max(values, axis=1)
    total = tl.zeros((BLOCK_T,), dtype=tl.float32)
    remaining = values
    for slot in tl.static_range(TOP_K):
        top = tl.max(remaining, axis=1)
        index = tl.min(tl.where(remaining == top[:, None], cols[None, :], BLOCK_E), axis=1)
        total += tl.exp(top - best)
        remaining = tl.where(cols[None, :] == index[:, None], float("-inf"), remaining)
    for slot in tl.static_range(TOP_K):
        top = tl.max(values, axis=1)
        index = tl.min(tl.where(values == top[:, None], cols[None, :], BLOCK_E), axis=1)
        tl.store(ids_ptr + rows * TOP_K + slot, index.to(tl.int64), mask=live)
        tl.store(weights_ptr + rows * TOP_K + slot, tl.exp(top - best) / total, mask=live)
        values = tl.where(cols[None, :] == index[:, None], float("-inf"), values)


@triton.jit
def expert_permutation_kernel(ids_ptr, order_ptr, counts_ptr, routed, BLOCK: tl.constexpr):
    expert = tl.program_id(0)
    lanes = tl.arange(0, BLOCK)
    before = tl.zeros((), dtype=tl.int64)
    count = tl.zeros((), dtype=tl.int64)
    for start in range(0, routed, BLOCK):
        ids = tl.load(ids_ptr + start + lanes, mask=start + lanes < routed, other=-1)
        before += tl.sum(((ids < expert) & (ids >= 0)).to(tl.int64), axis=0)
        count += tl.sum((ids == expert).to(tl.int64), axis=0)
    tl.store(counts_ptr + expert, count)
    at = before
    for start in range(0, routed, BLOCK):
        ids = tl.load(ids_ptr + start + lanes, mask=start + lanes < routed, other=-1)
        hit = ids == expert
        rank = tl.cumsum(hit.to(tl.int64), axis=0)
        tl.store(order_ptr + at + rank - 1, (start + lanes).to(tl.int64), mask=hit)
        at += tl.sum(hit.to(tl.int64), axis=0)


def fused_route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, ...]:
    """Weights, ids, the by-expert permutation and the counts from two Triton launches (tie rule in the header)."""
    tokens, experts = logits.shape
    if not 1 <= top_k <= experts:
        raise ValueError(f"top_k must be in 1..{experts}, got {top_k}")
    logits = logits.contiguous()
    weights = torch.empty((tokens, top_k), dtype=torch.float32, device=logits.device)
    ids = torch.empty((tokens, top_k), dtype=torch.int64, device=logits.device)
    order = torch.empty(tokens * top_k, dtype=torch.int64, device=logits.device)
    counts = torch.empty(experts, dtype=torch.int64, device=logits.device)
    topk_softmax_kernel[(triton.cdiv(tokens, BLOCK_TOKENS),)](
        logits, weights, ids, tokens, experts, logits.stride(0), TOP_K=top_k, BLOCK_T=BLOCK_TOKENS,
        BLOCK_E=triton.next_power_of_2(experts))
    expert_permutation_kernel[(experts,)](ids, order, counts, tokens * top_k, BLOCK=BLOCK_IDS)
    return weights, ids, order, counts


def optimized_fused_triton_router(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, ...]:
    """The router's outputs from a fused top-k softmax kernel and a per-expert permutation kernel."""
    return fused_route(logits, top_k)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The logits read once; weights, ids, permutation and counts written once (fp32 weights, int64 indices)."""
    tokens, experts, top_k = shape
    return Work(bytes=float(4 * tokens * experts + (4 + 8 + 8) * tokens * top_k + 8 * experts))
