"""Multi-head latent attention decode: DeepSeek-V2's MLA over a cache of expanded per-head keys and values vs the
absorbed form over the latent cache.

DeepSeek-V2-Lite's attention (config.json: 16 heads, ``kv_lora_rank`` 512, ``qk_nope_head_dim`` 128,
``qk_rope_head_dim`` 64, ``v_head_dim`` 128, no query compression). A token's keys and values are one 512-wide
latent ``c_kv`` and one 64-wide RoPE key shared by all heads; ``kv_b_proj`` (W_UK, W_UV per head) expands the latent.

- Baseline: the original Hugging Face modeling code's cache: ``kv_b_proj`` expands the latent once per token, and
  the cache holds per-head keys [k_nope (128) | k_rope (64)] and values (128): 16 x 320 = 5120 values per token.
  Decode is SDPA over it, (batch, 16, 1, 192) queries, values of 128 (the memory-efficient backend takes a value
  width different from the key width).
- Optimized: the latent cache (512 + 64 = 576 values per token, 8.9x smaller) and weight absorption (DeepSeek-V2
  paper, section 2.1.2; FlashMLA's structure): q_latent = q_nope W_UK per head (a batched GEMM), then a Triton
  kernel that is MQA with one 576-wide key shared by 16 query heads and the 512-wide latent as the value (each
  latent tile is loaded once and serves as key and as value), split over the context with log-sum-exp partials,
  merged by the serving engine's combine kernel; then o = o_latent W_UV^T per head (a batched GEMM).
  scores = q_latent . c_kv + q_rope . k_rope equals q_nope . k_nope + q_rope . k_rope exactly in real arithmetic.

Shape ``(batch, context, heads, kv_lora_rank, rope_dim, nope_dim, v_dim)``, bf16. Timing shape (32, 8192, 16, 512,
64, 128, 128): 32 sequences of 8192 tokens, one layer. The softmax scale is 1/sqrt(192); DeepSeek's YaRN scaling
multiplies it by a constant (mscale^2), which changes neither arm's work.

Napkin math per layer (H100 SXM ~3.0 TB/s copy ceiling, H200 ~4.25 TB/s):
- bytes: expanded cache 32 x 8192 x 5120 x 2 B = 2.68 GB; latent cache 32 x 8192 x 576 x 2 B = 302 MB; kv_b_proj
  4.2 MB.
- baseline: 2.68 GB at 75-90% of the copy ceiling: ~1.0-1.2 ms (H100), ~0.7-0.84 ms (H200); 2.7 GFLOP.
- optimized: 302 MB at 70-85% of it: ~0.12-0.14 ms (H100), ~0.08-0.1 ms (H200); 9.1 GFLOP on the tensor cores
  (mma with 16 head rows, ~250-400 TFLOP/s: 23-36 us, partly hidden under the loads); the two GEMMs, the merge of
  ~9 MB of fp32 partials and three extra launches: ~20-40 us. ~0.15-0.2 ms (H100), ~0.11-0.16 ms (H200).
- predicted speedup: H100 5-8x, H200 4-7.5x; cache memory 8.9x smaller (exact: 5120 / 576).

Precision: the baseline rounds the expanded keys and values to bf16 (as the model's cache does); the optimized arm
rounds q_latent and o_latent to bf16 and accumulates in fp32. Against the float64 un-absorbed reference (which
expands the latent in float64, one sequence at a time), measured on the CPU in float64 emulation of both arms with
the real dimensions, 3 seeds each: the baseline 0.25%, 0.21% and 0.19% relative error at contexts 256, 4096 and
8192, the optimized arm 0.55%, 0.61% and 0.62-0.64%: close to the default rule's 2 x baseline + 0.3% at 8192, so
the case declares 1.5%.

On the CPU (the Triton interpreter, whose ``tl.dot`` cannot take bfloat16, triton-lang/triton#11584) the kernel
converts its bf16 tiles to fp32 before each product: the same values as the GPU's bf16 operands with fp32
accumulation.

Not yet measured on a GPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels import itemsize, normal, seeded
from kernels.ch18.grouped import grouped_attention
from kernels.serving.attention import (LOG2E, MAX_SPLITS, combine_splits_kernel, finish_partial, multiprocessors,
                                       softmax_step)
from pytest_aiperf import Work


@triton.jit
def _dot(a, b, EMULATE: tl.constexpr):
    if EMULATE:
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        out = tl.dot(a, b)
    return out


@triton.jit
def _latent_decode_kernel(part_ptr, lse_ptr, ql_ptr, qr_ptr, c_ptr, kr_ptr, context, tokens_per_split, scale,
                          HEADS: tl.constexpr, HEADS_PAD: tl.constexpr, LATENT: tl.constexpr, ROPE: tl.constexpr,
                          BLOCK_N: tl.constexpr, SPLITS: tl.constexpr, EMULATE: tl.constexpr):
    seq = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    h = tl.arange(0, HEADS_PAD)
    live = h < HEADS
    lat = tl.arange(0, LATENT)
    rot = tl.arange(0, ROPE)
    rows = seq * HEADS + h
    q_lat = tl.load(ql_ptr + rows[:, None] * LATENT + lat[None, :], mask=live[:, None], other=0.0)
    q_rot = tl.load(qr_ptr + rows[:, None] * ROPE + rot[None, :], mask=live[:, None], other=0.0)
    n = tl.arange(0, BLOCK_N)
    first = split * tokens_per_split
    last = tl.minimum(first + tokens_per_split, context)
    m = tl.full([HEADS_PAD], float("-inf"), tl.float32)
    total = tl.zeros([HEADS_PAD], tl.float32)
    acc = tl.zeros([HEADS_PAD, LATENT], tl.float32)
    for t0 in range(first, last, BLOCK_N):
        t = t0 + n
        valid = t < last
        token = seq * context + t
        c = tl.load(c_ptr + token[:, None] * LATENT + lat[None, :], mask=valid[:, None], other=0.0)
        k_rot = tl.load(kr_ptr + token[:, None] * ROPE + rot[None, :], mask=valid[:, None], other=0.0)
        s = (_dot(q_lat, tl.trans(c), EMULATE) + _dot(q_rot, tl.trans(k_rot), EMULATE)) * scale
        m, p, alpha, total = softmax_step(tl.where(valid[None, :], s, float("-inf")), m, total)
        acc = acc * alpha[:, None] + _dot(p.to(c.dtype), c, EMULATE)
    out, lse = finish_partial(m, total, acc)
    tl.store(part_ptr + ((rows * SPLITS + split) * LATENT)[:, None] + lat[None, :], out, mask=live[:, None])
    tl.store(lse_ptr + rows * SPLITS + split, lse, mask=live)


def context_split_count(batch: int, context: int, block_n: int, device: torch.device) -> int:
    """Context splits per sequence: two waves of the GPU's SMs, at least one tile each, at most ``MAX_SPLITS``; off
    CUDA, 2 where the context has two tiles (so the CPU check merges partials)."""
    tiles = -(-context // block_n)
    if device.type != "cuda":
        return min(2, tiles)
    return max(1, min(-(-2 * multiprocessors(device) // batch), tiles, MAX_SPLITS))


def expanded_cache(c_kv: torch.Tensor, k_rope: torch.Tensor, w_kv_b: torch.Tensor, heads: int,
                   nope: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Hugging Face cache: ``kv_b_proj`` applied to every cached latent, keys [k_nope | k_rope] (batch, heads,
    context, nope + rope) and values (batch, heads, context, v_dim), in the latent's dtype."""
    batch, context, _ = c_kv.shape
    kv = F.linear(c_kv, w_kv_b).view(batch, context, heads, -1)
    k_nope, v = kv[..., :nope], kv[..., nope:]
    k = torch.cat([k_nope, k_rope[:, :, None].expand(batch, context, heads, k_rope.shape[-1])], dim=-1)
    return k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """The new token's q_nope (batch, heads, nope) and q_rope (batch, heads, rope), after RoPE; the latent cache
    c_kv (batch, context, latent) and k_rope (batch, context, rope), unit-normal (c_kv comes out of an RMSNorm);
    ``kv_b_proj``'s weight (heads x (nope + v_dim), latent), std latent^-1/2; and the expanded cache the baseline
    keeps, computed from them on the device."""
    batch, context, heads, latent, rope, nope, v_dim = shape
    gen = seeded(seed)
    q_nope = normal(gen, (batch, heads, nope), dtype, device)
    q_rope = normal(gen, (batch, heads, rope), dtype, device)
    c_kv = normal(gen, (batch, context, latent), dtype, device)
    k_rope = normal(gen, (batch, context, rope), dtype, device)
    w_kv_b = normal(gen, (heads * (nope + v_dim), latent), dtype, device, std=latent**-0.5)
    k_cache, v_cache = expanded_cache(c_kv, k_rope, w_kv_b, heads, nope)
    return q_nope, q_rope, c_kv, k_rope, w_kv_b, k_cache, v_cache


def baseline_expanded_cache_sdpa(q_nope: torch.Tensor, q_rope: torch.Tensor, c_kv: torch.Tensor,
                                 k_rope: torch.Tensor, w_kv_b: torch.Tensor, k_cache: torch.Tensor,
                                 v_cache: torch.Tensor) -> torch.Tensor:
    """SDPA of [q_nope | q_rope] over the expanded per-head cache: (batch, heads, v_dim)."""
    q = torch.cat([q_nope, q_rope], dim=-1)[:, :, None]
    return F.scaled_dot_product_attention(q, k_cache, v_cache, scale=q.shape[-1] ** -0.5)[:, :, 0]


def optimized_absorbed_latent(q_nope: torch.Tensor, q_rope: torch.Tensor, c_kv: torch.Tensor, k_rope: torch.Tensor,
                              w_kv_b: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> torch.Tensor:
    """W_UK absorbed into the query, MQA over the latent cache in one kernel (plus the merge), W_UV applied to the
    latent output: (batch, heads, v_dim)."""
    batch, heads, nope = q_nope.shape
    context, latent = c_kv.shape[1], c_kv.shape[2]
    rope = q_rope.shape[-1]
    w = w_kv_b.view(heads, -1, latent)
    w_uk, w_uv = w[:, :nope], w[:, nope:]
    q_latent = torch.bmm(q_nope.transpose(0, 1), w_uk).transpose(0, 1).contiguous()
    block_n = 32 if c_kv.is_cuda else 16
    splits = context_split_count(batch, context, block_n, c_kv.device)
    per_split = -(-context // splits)
    per_split = -(-per_split // block_n) * block_n
    part = torch.empty(batch, heads, splits, latent, dtype=torch.float32, device=c_kv.device)
    lse = torch.empty(batch, heads, splits, dtype=torch.float32, device=c_kv.device)
    _latent_decode_kernel[(batch, splits)](
        part, lse, q_latent, q_rope.contiguous(), c_kv, k_rope, context, per_split,
        LOG2E / math.sqrt(nope + rope), HEADS=heads, HEADS_PAD=max(16, triton.next_power_of_2(heads)),
        LATENT=latent, ROPE=rope, BLOCK_N=block_n, SPLITS=splits, EMULATE=not c_kv.is_cuda, num_warps=8)
    o_latent = torch.empty(batch, heads, latent, dtype=c_kv.dtype, device=c_kv.device)
    combine_splits_kernel[(batch * heads,)](o_latent, part, lse, SPLITS=splits,
                                             SPLITS_PAD=triton.next_power_of_2(splits), HEAD_DIM=latent)
    return torch.bmm(o_latent.transpose(0, 1), w_uv.transpose(1, 2)).transpose(0, 1)


def reference(q_nope: torch.Tensor, q_rope: torch.Tensor, c_kv: torch.Tensor, k_rope: torch.Tensor,
              w_kv_b: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> torch.Tensor:
    """The un-absorbed formula in float64, one sequence at a time: expand the latent with kv_b_proj, attend."""
    batch, heads, nope = q_nope.shape
    out = []
    for seq in range(batch):
        k, v = expanded_cache(c_kv[seq:seq + 1], k_rope[seq:seq + 1], w_kv_b, heads, nope)
        q = torch.cat([q_nope[seq], q_rope[seq]], dim=-1)[None, :, None]
        out.append(grouped_attention(q, k, v)[0, :, 0])
    return torch.stack(out)


def workload(q_nope: torch.Tensor, q_rope: torch.Tensor, c_kv: torch.Tensor, k_rope: torch.Tensor,
             w_kv_b: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> dict[str, float]:
    """The statistic that decides the speedup: the expanded cache's bytes over the latent cache's (8.9 for
    DeepSeek-V2-Lite)."""
    latent = c_kv.numel() + k_rope.numel()
    return {"cache_ratio": (k_cache.numel() + v_cache.numel()) / latent}


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The latent cache (576 values per token) and kv_b_proj read once, the queries read and the outputs written
    once; the absorbed arm's flops: 2 per multiply-add of the two projections, the 576-wide scores and the 512-wide
    weighted sum."""
    batch, context, heads, latent, rope, nope, v_dim = shape
    elements = (batch * context * (latent + rope) + heads * (nope + v_dim) * latent
                + batch * heads * (nope + rope + v_dim))
    flops = 2 * batch * heads * (context * (2 * latent + rope) + nope * latent + latent * v_dim)
    return Work(bytes=float(itemsize(dtype) * elements), flops=float(flops))
