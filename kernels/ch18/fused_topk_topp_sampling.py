"""Top-k/top-p sampling: the sort-based logits processors vs ``torch.topk`` and one fused Triton sampling kernel.

One decode step's sampling for a batch: temperature 0.7, top-k 50, top-p 0.9, over Llama-3's 128,256-token vocabulary.

The function both arms compute (exact, ties included), for logits x of one row and a uniform draw u in [0, 1):
1. top-k by value, Hugging Face's ``TopKLogitsWarper`` rule: keep every token whose logit is at least the k-th
   largest logit x_k (a tie at x_k keeps the whole tie group, so more than k tokens may stay).
2. top-p by value: with weights w = exp(x / T) over the kept tokens (total Z), keep token i when the weight of the
   tokens with a strictly larger logit is below p Z. This is ``TopPLogitsWarper``'s rule with ties resolved as whole
   groups (its sorted-position rule keeps an arbitrary part of a tie group at the boundary).
3. inverse-CDF sampling: order the kept tokens by logit, descending, ties by token id, ascending; return the first
   token whose cumulative weight exceeds u times the kept total. The same u for both arms replaces
   ``torch.multinomial``, whose draws no second implementation can reproduce.
The two arms may differ only where u times the total, or the top-p mass, lies within fp32 rounding of a boundary;
the float64 reference decides the check, and the check shapes hit no such boundary.

- Baseline: the processors as transformers and vLLM's ``apply_top_k_top_p`` write them, on the GPU: ``topk`` for the
  k-th value and a masked fill; a full-vocabulary sort (descending, stable: ties by id); softmax over the sorted
  logits / T, cumsum, the top-p threshold value, a masked fill, a second cumsum and a search. One sort and ~12
  passes over (batch, vocab) tensors.
- Optimized: ``torch.topk`` (radix select) for the k candidates, then one Triton program per row: one pass over the
  row counts the tokens tied with x_k (the candidates may hold only part of that group); the top-p test and the
  inverse CDF run on the 50 candidates in registers (pairwise comparisons for the masses above each candidate and
  for the rank order); only when u lands in the x_k tie group does a second pass find that group's j-th token by id.

Shape ``(batch, vocab, top_k)``; fp32 logits. Timing shape (64, 128256, 50). The logits are bf16 values (a bf16 LM
head's output, upcast to fp32 as transformers does): with 128,256 of them, ties among the top 50 are common. Rows
cycle through four kinds: N(0, 1) and N(0, 3) logits, and N(0, 1) and N(0, 0.3) logits rounded to multiples of
1/4, so the small check shapes also have top-k and top-p boundaries inside tie groups and u landing in the tail.

Napkin math (H100 SXM ~3.0 TB/s, H200 ~4.25 TB/s):
- work: the logits, 64 x 128256 x 4 B = 32.8 MB, read once.
- baseline: ``topk`` ~30-80 us (both arms); a segmented sort of 8.2 M fp32 keys with int64 indices, ~0.15-0.35 ms;
  ~12 passes moving ~600 MB and ~15 launches, ~0.2-0.25 ms: ~0.4-0.7 ms.
- optimized: ``topk`` plus one kernel: 64 programs stream 513 KB each (a few us per program at the bandwidth one SM
  sustains, ~10-20 us), the tie-group pass on some rows: ~0.05-0.12 ms.
- predicted speedup: H100 3-8x, H200 3-8x (the sort is not bound by HBM alone); at the level of a whole decode step
  (a Llama-3-8B forward of several ms) ~1.1-1.3x, not measured here.

Not yet measured on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from kernels import seeded
from pytest_aiperf import Work

TEMPERATURE, TOP_P = 0.7, 0.9
ROW_KINDS = ((1.0, 0.0), (3.0, 0.0), (1.0, 0.25), (0.3, 0.25))


@triton.jit
def _topk_topp_sample_kernel(tok_ptr, x_ptr, val_ptr, idx_ptr, u_ptr, vocab, k, temperature, top_p,
                             KPAD: tl.constexpr, CHUNK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, KPAD)
    valid = i < k
    c = tl.load(val_ptr + row * k + i, mask=valid, other=float("-inf"))
    ids = tl.load(idx_ptr + row * k + i, mask=valid, other=0).to(tl.int32)
    top = tl.max(c, 0)
    kth = tl.min(tl.where(valid, c, float("inf")), 0)
    offs = tl.arange(0, CHUNK)
    ties = 0
    for start in range(0, vocab, CHUNK):
        x = tl.load(x_ptr + row * vocab + start + offs, mask=start + offs < vocab, other=float("-inf"))
        ties += tl.sum((x == kth).to(tl.int32), 0)
    w = tl.where(valid, tl.exp((c - top) / temperature), 0.0)
    w_kth = tl.exp((kth - top) / temperature)
    missing = ties - tl.sum((valid & (c == kth)).to(tl.int32), 0)
    z = tl.sum(w, 0) + missing.to(tl.float32) * w_kth
    greater = c[None, :] > c[:, None]
    mass_above = tl.sum(tl.where(greater, w[None, :], 0.0), 1)
    keep = valid & (mass_above < top_p * z)
    kth_kept = tl.sum((keep & (c == kth)).to(tl.int32), 0) > 0
    above = keep & (c > kth)
    kept = tl.sum(tl.where(above, w, 0.0), 0) + tl.where(kth_kept, ties.to(tl.float32) * w_kth, 0.0)
    target = tl.load(u_ptr + row) * kept
    ahead = greater | ((c[None, :] == c[:, None]) & (ids[None, :] < ids[:, None]))
    end = tl.sum(tl.where(ahead & above[None, :], w[None, :], 0.0), 1) + w
    hit = above & (end > target)
    any_hit = tl.sum(hit.to(tl.int32), 0) > 0
    pick = tl.where(any_hit, tl.argmin(tl.where(hit, end, float("inf")), 0),
                    tl.argmax(tl.where(above, end, float("-inf")), 0))
    token = tl.sum(tl.where(i == pick, ids, 0), 0)
    if kth_kept & (any_hit == 0):
        head = tl.max(tl.where(above, end, 0.0), 0)
        j = tl.minimum(((target - head) / w_kth).to(tl.int32), ties - 1)
        seen = 0
        token = token * 0
        for start in range(0, vocab, CHUNK):
            x = tl.load(x_ptr + row * vocab + start + offs, mask=start + offs < vocab, other=float("-inf"))
            eq = x == kth
            rank = seen + tl.cumsum(eq.to(tl.int32), 0)
            token += tl.sum(tl.where(eq & (rank == j + 1), start + offs, 0), 0)
            seen += tl.sum(eq.to(tl.int32), 0)
    tl.store(tok_ptr + row, token.to(tl.int64))


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Logits (batch, vocab), bf16 values in fp32, rows cycling through ``ROW_KINDS`` (std, grid); one uniform draw
    per row in [0, 1) (fp32); and top_k (an int: a sampling parameter, passed along)."""
    batch, vocab, top_k = shape
    gen = seeded(seed)
    std = torch.tensor([ROW_KINDS[r % len(ROW_KINDS)][0] for r in range(batch)])[:, None]
    grid = torch.tensor([ROW_KINDS[r % len(ROW_KINDS)][1] for r in range(batch)])[:, None]
    logits = torch.randn((batch, vocab), generator=gen) * std
    logits = torch.where(grid > 0, torch.round(logits / grid.clamp(min=1e-9)) * grid, logits)
    logits = logits.to(torch.bfloat16).to(torch.float32)
    u = torch.rand((batch,), generator=gen)
    return logits.to(device), u.to(device), top_k


def baseline_sort_then_filter(logits: torch.Tensor, u: torch.Tensor, top_k: int) -> torch.Tensor:
    """topk's k-th value and a masked fill, a full-vocabulary stable sort, softmax, cumsum, the top-p threshold,
    a second cumsum and an inverse-CDF search: token ids (batch,)."""
    kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
    filtered = logits.masked_fill(logits < kth, float("-inf"))
    ordered, order = torch.sort(filtered, dim=-1, descending=True, stable=True)
    probs = torch.softmax(ordered / TEMPERATURE, dim=-1)
    reach = (probs.cumsum(-1) < TOP_P).sum(-1, keepdim=True).clamp(max=ordered.shape[-1] - 1)
    threshold = ordered.gather(-1, reach)
    cdf = probs.masked_fill(ordered < threshold, 0.0).cumsum(-1)
    pick = (cdf <= u[:, None].to(cdf.dtype) * cdf[:, -1:]).sum(-1, keepdim=True)
    kept = (ordered >= threshold).sum(-1, keepdim=True)
    return order.gather(-1, torch.minimum(pick, kept - 1)).squeeze(-1)


def optimized_topk_fused_kernel(logits: torch.Tensor, u: torch.Tensor, top_k: int) -> torch.Tensor:
    """torch.topk for the candidates, then one Triton program per row: the tie count, top-p and the inverse CDF."""
    batch, vocab = logits.shape
    values, indices = torch.topk(logits, top_k, dim=-1)
    tokens = torch.empty(batch, dtype=torch.int64, device=logits.device)
    _topk_topp_sample_kernel[(batch,)](tokens, logits, values, indices, u, vocab, top_k, TEMPERATURE, TOP_P,
                                       KPAD=max(16, triton.next_power_of_2(top_k)),
                                       CHUNK=min(4096, triton.next_power_of_2(vocab)), num_warps=8)
    return tokens


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The logits read once, the draws read and the token ids written once (no flops worth counting)."""
    batch, vocab, _ = shape
    return Work(bytes=float(4 * batch * vocab + 4 * batch + 8 * batch))
