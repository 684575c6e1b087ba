"""GQA decode: Hugging Face's ``repeat_kv`` then SDPA vs SDPA with ``enable_gqa=True``, one new token per sequence.

Llama-3-8B's attention (32 query heads, 8 KV heads of 128: groups of 4) at decode, over contiguous caches of equal
length (a static batch; ``paged_decode_attention`` covers ragged lengths).

- Baseline: ``repeat_kv`` (expand + reshape: a copy of every KV head for each of its 4 query heads), then SDPA on
  (batch, 32, 1, 128) queries. This is what ``sdpa_attention_forward`` in transformers does whenever it is given an
  attention mask (its ``use_gqa_in_sdpa`` allows ``enable_gqa`` only without one) and what every release before
  torch 2.5 had to do. The copy reads the cache once and writes it 4x; SDPA then reads the 4x copy.
- Optimized: ``F.scaled_dot_product_attention(q, k, v, enable_gqa=True)``: the flash backend maps query head h to
  KV head h // 4 by index, so the cache is read once (FlashAttention-2 also stacks a group's queries as rows
  against their KV head when there is one query token).

Shape ``(batch, heads, kv_heads, context, head_dim)``, bf16. Timing shapes: (32, 32, 8, 4096, 128), 32 sequences of
4096 tokens, and (8, 32, 8, 32768, 128), 8 long-context sequences (where a decode kernel must split the keys to fill
the GPU).

Napkin math per layer, (32, 32, 8, 4096, 128) (H100 SXM ~3.0 TB/s copy ceiling, H200 ~4.25 TB/s):
- work: K and V 32 x 8 x 4096 x 128 x 2 B x 2 = 537 MB read once; 4 x 32 x 32 x 4096 x 128 = 2.1 GFLOP (nothing).
- baseline: the copies read 537 MB and write 2.15 GB (2.7 GB moved: ~0.9 ms at the copy ceiling), SDPA reads
  2.15 GB (~0.8-0.9 ms at 80-90% of it): ~1.7-1.9 ms (H100), ~1.2-1.35 ms (H200).
- optimized: 537 MB at 70-90% of the copy ceiling: ~0.2-0.26 ms (H100), ~0.14-0.18 ms (H200).
- (8, 32, 8, 32768, 128) moves twice the bytes in the same proportions: the same ratio, if the flash kernel splits
  the 32768 keys across enough programs (64 (sequence, KV head) pairs alone fill half an H100).
- predicted speedup: H100 5-9x, H200 5-9x (both arms are bound by HBM bandwidth: the ratio is the bytes' ~9x,
  less the optimized arm's lower share of the ceiling).

Precision: both arms compute the same bf16 attention (the repeat is an exact copy); the default bf16 bound holds.

Risk: if torch 2.11 routes ``enable_gqa`` at one query token to the math backend on the GPU (it would then repeat
the heads itself and materialize the scores), the optimized arm loses most of its margin; the gate shows it.

Not yet measured on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from kernels.ch18.grouped import grouped_attention, repeat_kv
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """The new tokens' queries (batch, heads, 1, head_dim) and the caches' keys and values (batch, kv_heads, context,
    head_dim), unit-normal."""
    batch, heads, kv_heads, context, head_dim = shape
    gen = seeded(seed)
    q = normal(gen, (batch, heads, 1, head_dim), dtype, device)
    k = normal(gen, (batch, kv_heads, context, head_dim), dtype, device)
    v = normal(gen, (batch, kv_heads, context, head_dim), dtype, device)
    return q, k, v


def baseline_repeat_kv_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Copy each KV head for its query heads, then SDPA over the expanded caches."""
    groups = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, repeat_kv(k, groups), repeat_kv(v, groups))


def optimized_sdpa_enable_gqa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA reads each KV head once for its whole group of query heads."""
    return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Grouped attention in float64, the group's queries stacked as rows (no repeated cache)."""
    return grouped_attention(q, k, v)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Keys and values read once, the queries read and the outputs written once; 2 flops per multiply-add of the
    scores and of the weighted sum."""
    batch, heads, kv_heads, context, head_dim = shape
    elements = 2 * batch * kv_heads * context * head_dim + 2 * batch * heads * head_dim
    return Work(bytes=float(itemsize(dtype) * elements), flops=float(4 * batch * heads * context * head_dim))
