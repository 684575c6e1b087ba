"""Cascade decoding over a shared prefix: the paged kernel streaming the prefix once per request vs the prefix's
attention computed once for all requests, each request's own suffix apart, merged by log-sum-exp.

64 requests share one long prefix (a system prompt, a few-shot header, a document under many questions) held once
in the paged pool (a prefix cache: every block table starts with the same blocks), each followed by its own suffix.
Llama-3-8B's attention (32 query heads, 8 KV heads of 128), pages of 16 tokens.

- Baseline: the serving engine's ``paged_decode`` over each request's whole table: memory is shared, reads are not;
  every request streams the prefix's keys and values again (what vLLM's PagedAttention does without cascade).
- Optimized: cascade attention (FlashInfer's cascade inference, Ye et al. 2024) in three launches. (1) A Triton
  kernel for the prefix: the queries of all requests that read one KV head (64 requests x 4 heads = 256 rows) are
  one dense multi-query problem; a program takes 64 of those rows and a split of the prefix's pages, so each page
  is loaded once per 64 query rows instead of once per 4, and writes a partial output and its log-sum-exp. (2) The
  serving kernel ``paged_decode_kernel`` over each request's suffix pages, writing its partial outputs and
  log-sum-exps beside the prefix's. (3) The serving kernel ``combine_splits_kernel`` merges every partial of a row
  (weights 2^(lse - max)): exact, the same attention over prefix + suffix.

Shape ``(requests, prefix, suffix, heads, kv_heads, head_dim, page)``: suffix lengths spread evenly from suffix / 2
to ``suffix`` and shuffled (seeded); the prefix is whole pages. fp16, for the reason ``paged_decode_attention``
gives (the serving kernels and the CI interpreter's bfloat16 ``tl.dot``). Timing shape (64, 8192, 256, 32, 8, 128,
16).

Napkin math per layer (H100 SXM ~3.0 TB/s copy ceiling, H200 ~4.25 TB/s; a token's keys and values are 4 KB):
- work: prefix 8192 tokens, 33.5 MB, read once; suffixes 12,288 tokens, 50 MB; 4 x 64 x 32 x 128 x 8384 = 8.8
  GFLOP.
- baseline: 64 x 8384 tokens, 2.2 GB, through the SMs. Requests read the prefix's pages at about the same time, so
  part of that hits in L2 (50 MB on an H100): bound between HBM (0.73 ms H100, 0.52 ms H200) and L2 bandwidth
  (~0.35 ms): ~0.35-0.75 ms.
- optimized: the prefix kernel moves 4 x 33.5 MB (64-row tiles; mostly L2 hits) and does 8.6 GFLOP on the tensor
  cores (~150-300 TFLOP/s for these tiles): ~30-60 us; the suffixes 50 MB: ~20-25 us; the merge reads ~10 MB of fp32
  partials: ~5-10 us; with launch gaps ~60-100 us.
- predicted speedup: H100 3.5-12x, H200 3.5-9x (the baseline's L2 share is the unknown). FlashInfer reports up to
  26x against its own non-cascade batch decode on an H100 SXM (flashinfer.ai/2024/02/02/cascade-inference.html),
  with the shared prefix staged in shared memory.

Precision: both arms read the same fp16 pages and keep fp32 partials; the default fp16 bound holds. The reference
attends each request over its whole table in float64.

Not yet measured on a GPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import triton
import triton.language as tl

from kernels import itemsize, normal, seeded
from kernels.ch18.paged_decode_attention import context_lengths, scattered_pool
from kernels.ch18.paged_decode_attention import reference as paged_reference
from kernels.serving.attention import (LOG2E, MAX_SPLITS, TILE_TOKENS, attend_tile, combine_splits_kernel,
                                       finish_partial, multiprocessors, paged_decode, paged_decode_kernel, split_count)
from pytest_aiperf import Work

ROWS_PER_PROGRAM = 64


@triton.jit
def _shared_prefix_kernel(part_ptr, lse_ptr, q_ptr, k_ptr, v_ptr, table_ptr, rows, pages, pages_per_split, scale,
                          HEADS: tl.constexpr, KV_HEADS: tl.constexpr, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
                          BLOCK_SIZE: tl.constexpr, PAGES: tl.constexpr, BLOCK_M: tl.constexpr,
                          SPLITS: tl.constexpr, PRECISION: tl.constexpr):
    kv_head = tl.program_id(0)
    r = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    split = tl.program_id(2)
    live = r < rows
    out_rows = ((r // GROUP) * HEADS + kv_head * GROUP + r % GROUP).to(tl.int64)
    d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_ptr + out_rows[:, None] * HEAD_DIM + d[None, :], mask=live[:, None], other=0.0)
    tile = tl.arange(0, PAGES * BLOCK_SIZE)
    first = split * pages_per_split
    last = tl.minimum(first + pages_per_split, pages)
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for page0 in range(first, last, PAGES):
        page = page0 + tile // BLOCK_SIZE
        valid = page < last
        block = tl.load(table_ptr + page, mask=valid, other=0).to(tl.int64)
        offsets = ((block * BLOCK_SIZE + tile % BLOCK_SIZE) * KV_HEADS + kv_head) * HEAD_DIM
        m, total, acc = attend_tile(q, k_ptr, v_ptr, offsets, d, valid, scale, m, total, acc, PRECISION)
    out, lse = finish_partial(m, total, acc)
    tl.store(part_ptr + ((out_rows * SPLITS + split) * HEAD_DIM)[:, None] + d[None, :], out, mask=live[:, None])
    tl.store(lse_ptr + out_rows * SPLITS + split, lse, mask=live)


def prefix_split_count(programs: int, pages: int, pages_per_tile: int, device: torch.device) -> int:
    """Prefix splits: enough programs for two waves of the GPU's SMs, at least one tile of pages each, at most
    ``MAX_SPLITS``; off CUDA, 2 where the prefix has two tiles (so the CPU check merges several prefix partials)."""
    tiles = -(-pages // pages_per_tile)
    if device.type != "cuda":
        return min(2, tiles)
    return max(1, min(-(-2 * multiprocessors(device) // programs), tiles, MAX_SPLITS))


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """q (requests, heads, head_dim) unit-normal, the keys and values pools, block tables whose first
    prefix / page blocks are the same for every request, the total lengths (int32), and that shared page count."""
    requests, prefix, suffix, heads, kv_heads, head_dim, page = shape
    if prefix <= 0 or prefix % page:
        raise ValueError(f"a shared prefix is one or more whole pages: {prefix} tokens in pages of {page}")
    gen = seeded(seed)
    suffixes = context_lengths(requests, max(1, suffix // 2), suffix)[torch.randperm(requests, generator=gen)]
    q = normal(gen, (requests, heads, head_dim), dtype, device)
    keys, values, tables = scattered_pool(gen, suffixes, page, kv_heads, head_dim, dtype, device,
                                          shared_pages=prefix // page)
    return q, keys, values, tables, (suffixes + prefix).to(device=device, dtype=torch.int32), prefix // page


def baseline_paged_per_request(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, tables: torch.Tensor,
                               lengths: torch.Tensor, shared_pages: int) -> torch.Tensor:
    """The paged kernel over every request's whole table: the shared prefix streamed once per request."""
    return paged_decode(q, keys, values, tables, lengths)


def optimized_cascade(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, tables: torch.Tensor,
                      lengths: torch.Tensor, shared_pages: int) -> torch.Tensor:
    """The prefix once for all requests' queries, each suffix apart, the partials merged by log-sum-exp."""
    requests, heads, head_dim = q.shape
    page, kv_heads = keys.shape[1], keys.shape[2]
    group, rows = heads // kv_heads, requests * heads // kv_heads
    per_tile = max(1, TILE_TOKENS // page)
    suffix_tables = tables[:, shared_pages:]
    block_m = min(ROWS_PER_PROGRAM, max(16, triton.next_power_of_2(rows)))
    row_tiles = -(-rows // block_m)
    prefix_splits = prefix_split_count(kv_heads * row_tiles, shared_pages, per_tile, q.device)
    suffix_splits = split_count(requests, kv_heads, suffix_tables.shape[1], per_tile, q.device)
    splits = prefix_splits + suffix_splits
    part = torch.empty(requests, heads, splits, head_dim, dtype=torch.float32, device=q.device)
    lse = torch.empty(requests, heads, splits, dtype=torch.float32, device=q.device)
    scale = LOG2E / math.sqrt(head_dim)
    precision = "ieee" if q.dtype in (torch.float32, torch.float64) else "tf32"
    q = q.contiguous()
    _shared_prefix_kernel[(kv_heads, row_tiles, prefix_splits)](
        part, lse, q, keys, values, tables[0], rows, shared_pages, -(-shared_pages // prefix_splits), scale,
        HEADS=heads, KV_HEADS=kv_heads, GROUP=group, HEAD_DIM=head_dim, BLOCK_SIZE=page, PAGES=per_tile,
        BLOCK_M=block_m, SPLITS=splits, PRECISION=precision, num_warps=4)
    paged_decode_kernel[(requests, kv_heads, suffix_splits)](
        part[:, :, prefix_splits:], lse[:, :, prefix_splits:], q, keys, values, suffix_tables,
        lengths - shared_pages * page, scale, tables.stride(0), -(-suffix_tables.shape[1] // suffix_splits),
        KV_HEADS=kv_heads, GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)), HEAD_DIM=head_dim,
        BLOCK_SIZE=page, PAGES=per_tile, SPLITS=splits, PRECISION=precision, num_warps=4)
    out = torch.empty_like(q)
    combine_splits_kernel[(requests * heads,)](out, part, lse, SPLITS=splits,
                                                SPLITS_PAD=triton.next_power_of_2(splits), HEAD_DIM=head_dim)
    return out


def reference(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, tables: torch.Tensor,
              lengths: torch.Tensor, shared_pages: int) -> torch.Tensor:
    """Each request over its whole table (prefix, then suffix), in float64."""
    return paged_reference(q, keys, values, tables, lengths)


def workload(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, tables: torch.Tensor, lengths: torch.Tensor,
             shared_pages: int) -> dict[str, float]:
    """The statistic that decides the speedup: the share of the requests' tokens that are the shared prefix."""
    prefix = shared_pages * keys.shape[1]
    return {"prefix_share": prefix * lengths.numel() / float(lengths.sum())}


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The prefix's keys and values read once, each suffix's once, the queries read and the outputs written once;
    2 flops per multiply-add of every request's scores and weighted sum over prefix + suffix."""
    requests, prefix, suffix, heads, kv_heads, head_dim, _ = shape
    suffix_tokens = int(context_lengths(requests, max(1, suffix // 2), suffix).sum())
    elements = 2 * (prefix + suffix_tokens) * kv_heads * head_dim + 2 * requests * heads * head_dim
    return Work(bytes=float(itemsize(dtype) * elements),
                flops=float(4 * heads * head_dim * (requests * prefix + suffix_tokens)))
