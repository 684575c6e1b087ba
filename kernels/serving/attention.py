"""Attention over a paged KV pool: decode (one new query token per sequence) and prefill chunks (queries that start
after tokens already in the pool).

Design references: the decode kernel follows vLLM's PagedAttention and the flash-decoding split-KV scheme (Dao et
al., 2023) as the Triton decode kernels of vLLM and SGLang lay it out: one program per (sequence, KV head, split)
walks its share of the sequence's block table, ``PAGES`` blocks per iteration, with an online softmax (running max
and sum, base 2); a split's partial output and log-sum-exp go to a small combine kernel, skipped when there is one
split. GQA: the program loads each key and value once for the whole group of query heads sharing its KV head, the
group padded to 16 rows (``tl.dot``'s minimum; the padded rows are tensor-core work, free in a bandwidth-bound
kernel). fp32 tiles multiply in IEEE fp32, never TF32. ``gathered_decode`` is the reference: gather the pages into
a contiguous cache and call SDPA with a length mask.

Prefill: ``prefill_attention`` runs one chunk's queries over the keys before and inside it. SDPA's ``is_causal``
aligns the diagonal top-left (query i sees keys 0..i), right only when the chunk starts at position 0; a chunk at
``start > 0`` (chunked prefill, a prefix-cache hit, a recompute) gets the explicit bottom-right mask ``key <= start
+ query``.

Cost model, per layer: decode reads every cached token's keys and values once, ``sum(lengths) x 2 x kv_heads x
head_dim x itemsize`` bytes, and does ``4 x heads x head_dim`` flops per cached token: bandwidth-bound (Llama-3.2-1B,
bf16: 2 KB per token, so 64 sequences of 1,024 tokens read 128 MB, ~40 us at 3.3 TB/s). The reference path moves
the same bytes twice more (the gather writes a copy that SDPA reads). A prefill chunk of L queries over S keys does
at most ``4 x heads x head_dim x L x S`` flops; the causal mask hides L(L-1)/2 of the L x S scores, which only the
``is_causal`` path (start 0) skips.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
TILE_TOKENS = 64
MAX_SPLITS = 16


@triton.jit
def softmax_step(s, m, total):
    """One tile of an online softmax (base 2): the scores ``s`` ``[rows, tokens]`` (masked to -inf) against the
    running max ``m`` and sum ``total``. Returns the new max, the tile's weights, the factor that rescales what was
    accumulated before, and the new sum."""
    m_new = tl.maximum(m, tl.max(s, 1))
    p = tl.exp2(s - m_new[:, None])
    alpha = tl.exp2(m - m_new)
    return m_new, p, alpha, total * alpha + tl.sum(p, 1)


@triton.jit
def attend_tile(q, k_ptr, v_ptr, offsets, d, valid, scale, m, total, acc, PRECISION: tl.constexpr):
    """Attend the query rows ``q`` to one tile of cached tokens (their rows at ``offsets``, ``valid`` where they
    exist), updating the running max, sum and weighted value sum."""
    k = tl.load(k_ptr + offsets[:, None] + d[None, :], mask=valid[:, None], other=0.0)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
    m, p, alpha, total = softmax_step(tl.where(valid[None, :], s, float("-inf")), m, total)
    v = tl.load(v_ptr + offsets[:, None] + d[None, :], mask=valid[:, None], other=0.0)
    return m, total, acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)


@triton.jit
def finish_partial(m, total, acc):
    """A split's partial output (the weighted value sum over its weights) and its log-sum-exp (base 2; -inf for a
    row that saw no token), which ``combine_splits_kernel`` merges."""
    some = total > 0
    out = acc / tl.where(some, total, 1.0)[:, None]
    return out, tl.where(some, m + tl.log2(tl.where(some, total, 1.0)), float("-inf"))


@triton.jit
def paged_decode_kernel(out_ptr, lse_ptr, q_ptr, k_ptr, v_ptr, tables_ptr, lens_ptr, scale, table_stride,
                         pages_per_split, KV_HEADS: tl.constexpr, GROUP: tl.constexpr, GROUP_PAD: tl.constexpr,
                         HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr, PAGES: tl.constexpr,
                         SPLITS: tl.constexpr, PRECISION: tl.constexpr):
    seq = tl.program_id(0).to(tl.int64)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    length = tl.load(lens_ptr + seq)
    g = tl.arange(0, GROUP_PAD)
    d = tl.arange(0, HEAD_DIM)
    rows = (seq * KV_HEADS + kv_head) * GROUP + g
    q = tl.load(q_ptr + rows[:, None] * HEAD_DIM + d[None, :], mask=(g < GROUP)[:, None], other=0.0)
    tile = tl.arange(0, PAGES * BLOCK_SIZE)
    first = split * pages_per_split
    last = tl.minimum(first + pages_per_split, tl.cdiv(length, BLOCK_SIZE))
    m = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    total = tl.zeros([GROUP_PAD], tl.float32)
    acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
    for page0 in range(first, last, PAGES):
        page = page0 + tile // BLOCK_SIZE
        in_pages = page < last
        valid = in_pages & (page * BLOCK_SIZE + tile % BLOCK_SIZE < length)
        block = tl.load(tables_ptr + seq * table_stride + page, mask=in_pages, other=0).to(tl.int64)
        offsets = ((block * BLOCK_SIZE + tile % BLOCK_SIZE) * KV_HEADS + kv_head) * HEAD_DIM
        m, total, acc = attend_tile(q, k_ptr, v_ptr, offsets, d, valid, scale, m, total, acc, PRECISION)
    out, lse = finish_partial(m, total, acc)
    keep = g < GROUP
    tl.store(out_ptr + ((rows * SPLITS + split) * HEAD_DIM)[:, None] + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=keep[:, None])
    tl.store(lse_ptr + rows * SPLITS + split, lse, mask=keep)


@triton.jit
def combine_splits_kernel(out_ptr, part_ptr, lse_ptr, SPLITS: tl.constexpr, SPLITS_PAD: tl.constexpr,
                           HEAD_DIM: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    s = tl.arange(0, SPLITS_PAD)
    d = tl.arange(0, HEAD_DIM)
    lse = tl.load(lse_ptr + row * SPLITS + s, mask=s < SPLITS, other=float("-inf"))
    weight = tl.exp2(lse - tl.max(lse, 0))
    part = tl.load(part_ptr + ((row * SPLITS + s) * HEAD_DIM)[:, None] + d[None, :], mask=(s < SPLITS)[:, None],
                   other=0.0)
    out = tl.sum(weight[:, None] * part, 0) / tl.sum(weight, 0)
    tl.store(out_ptr + row * HEAD_DIM + d, out.to(out_ptr.dtype.element_ty))


@functools.lru_cache(maxsize=None)
def multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def split_count(sequences: int, kv_heads: int, pages: int, pages_per_tile: int, device: torch.device) -> int:
    """Splits per (sequence, KV head): enough programs for two waves of the GPU's SMs, at least one tile of pages
    per split, at most ``MAX_SPLITS``; 1 off CUDA."""
    if device.type != "cuda":
        return 1
    programs = sequences * kv_heads
    sms = multiprocessors(device)
    return max(1, min(-(-2 * sms // programs), -(-pages // pages_per_tile), MAX_SPLITS))


def paged_decode(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, tables: torch.Tensor,
                 lengths: torch.Tensor, splits: int | None = None) -> torch.Tensor:
    """Attention of one query per sequence, ``q`` ``[batch, heads, head_dim]``, over the first ``lengths[b]``
    tokens of sequence b, whose blocks are ``tables[b]`` (int32 ``[batch, pages]``) in the pool's ``keys`` and
    ``values`` ``[blocks, block_size, kv_heads, head_dim]``: ``[batch, heads, head_dim]``. Every length must be at
    least 1 and at most ``pages x block_size``."""
    batch, heads, head_dim = q.shape
    _, block_size, kv_heads, _ = keys.shape
    pages = tables.shape[1]
    if head_dim & (head_dim - 1) or block_size & (block_size - 1):
        raise ValueError(f"head_dim {head_dim} and block_size {block_size} must be powers of two")
    group = heads // kv_heads
    per_tile = max(1, TILE_TOKENS // block_size)
    splits = splits or split_count(batch, kv_heads, pages, per_tile, q.device)
    pages_per_split = -(-pages // splits)
    out = torch.empty_like(q)
    part = out if splits == 1 else torch.empty(batch, heads, splits, head_dim, dtype=torch.float32, device=q.device)
    lse = torch.empty(batch, heads, splits, dtype=torch.float32, device=q.device)
    precision = "ieee" if q.dtype in (torch.float32, torch.float64) else "tf32"
    paged_decode_kernel[(batch, kv_heads, splits)](
        part, lse, q.contiguous(), keys, values, tables, lengths, LOG2E / math.sqrt(head_dim), tables.stride(0),
        pages_per_split, KV_HEADS=kv_heads, GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)),
        HEAD_DIM=head_dim, BLOCK_SIZE=block_size, PAGES=per_tile, SPLITS=splits, PRECISION=precision, num_warps=4)
    if splits > 1:
        combine_splits_kernel[(batch * heads,)](out, part, lse, SPLITS=splits,
                                                 SPLITS_PAD=triton.next_power_of_2(splits), HEAD_DIM=head_dim)
    return out


def gather_pages(cache: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """The blocks ``tables`` ``[batch, pages]`` names, as contiguous caches ``[batch, kv_heads, pages x block_size,
    head_dim]``."""
    batch, pages = tables.shape
    _, block_size, kv_heads, head_dim = cache.shape
    return cache[tables.long()].reshape(batch, pages * block_size, kv_heads, head_dim).transpose(1, 2)


def gathered_decode(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, tables: torch.Tensor,
                    lengths: torch.Tensor) -> torch.Tensor:
    """``paged_decode``'s reference: gather every sequence's pages into a contiguous cache, then SDPA over it with a
    mask that hides the positions at or past each length."""
    k, v = gather_pages(keys, tables), gather_pages(values, tables)
    mask = torch.arange(k.shape[2], device=q.device) < lengths[:, None].to(q.device)
    out = F.scaled_dot_product_attention(q.unsqueeze(2), k, v, attn_mask=mask[:, None, None, :], enable_gqa=True)
    return out.squeeze(2)


def prefill_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int) -> torch.Tensor:
    """Causal attention of a chunk's queries ``[chunk, heads, head_dim]`` at positions start.. over ``keys`` and
    ``values`` ``[start + chunk, kv_heads, head_dim]`` (the tokens before the chunk, then the chunk's own):
    ``[chunk, heads, head_dim]``."""
    chunk, total = q.shape[0], keys.shape[0]
    if total != start + chunk:
        raise ValueError(f"a chunk of {chunk} queries from position {start} attends over {start + chunk} keys, "
                         f"got {total}")
    q4, k4, v4 = (t.transpose(0, 1).unsqueeze(0) for t in (q, keys, values))
    if start == 0:
        out = F.scaled_dot_product_attention(q4, k4, v4, is_causal=chunk > 1, enable_gqa=True)
    else:
        mask = torch.arange(total, device=q.device) <= start + torch.arange(chunk, device=q.device)[:, None]
        out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask, enable_gqa=True)
    return out[0].transpose(0, 1)
