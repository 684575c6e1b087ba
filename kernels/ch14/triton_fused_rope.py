"""A custom Triton op inside a compiled graph: Hugging Face's rotate-half RoPE in eager PyTorch vs one Triton kernel,
registered with ``torch.library.triton_op`` and called from a ``torch.compile(fullgraph=True)`` region.

- Baseline: HF Llama's ``apply_rotary_pos_emb`` after the q and k projections: view as heads, transpose, then
  ``q * cos + rotate_half(q) * sin`` and the same for k. ``rotate_half`` slices, negates and concatenates, so each of
  q and k goes through five elementwise kernels (multiply, negate, cat, multiply, add) that move ~10x its bytes.
- Optimized: ``rope_rotate_half``, one Triton program per token that loads the token's q and k heads once, rotates
  both halves in fp32 registers and stores each once; returned as the same (batch, heads, seq, head_dim) views.
  ``triton_op`` (with ``wrap_triton`` on the launch) makes it an operator that ``torch.compile`` keeps in its graph,
  where Inductor sees the kernel and schedules it with the code around it; a bare Triton launch or an opaque custom
  op would either break the graph or hide the kernel. The region is compiled with ``fullgraph=True``, so a graph
  break there fails, on the CPU too.

Shape ``(batch, seq, heads, kv_heads, head_dim)``, bf16; cos and sin are the (seq, head_dim) tables of positions
0..seq-1 in the rotate-half layout (``kernels.llm.model.rope_tables``), read in full so any table works. Timing shape
(4, 4096, 32, 8, 128): Llama-3-8B's 32 query and 8 KV heads of 128 over 16384 tokens.

Napkin math (H100 SXM ~3.0 TB/s; H200 ~4.25 TB/s):
- bytes: q 16384 x 4096 x 2 B = 134 MB, k 33.5 MB; the fused kernel reads both and writes both, plus 2 MB of
  tables: ~337 MB = ~0.11 ms (H100) / ~0.08 ms (H200).
- baseline: per tensor of s bytes, the product with cos 2s, the negated half s, the cat 2s, the product with sin 2s,
  the sum 3s: 10s, 1.68 GB for q and k = ~0.56 ms / ~0.39 ms, on transposed (strided) views, plus 10 launches.
- predicted speedup: ~5x at the copy ceiling; 3.5-5x on both GPUs (both arms bandwidth-bound; the fused kernel's
  one program per token may stay below the copy ceiling).

Checked on the CPU under TRITON_INTERPRET=1, through the compiled graph (``AIPERF_COMPILE_BACKEND=eager`` there, so
Dynamo traces the op; the interpreter cannot trace the kernel with fake tensors, hence the explicit fake
implementation). Not yet measured on a GPU.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch
import triton
import triton.language as tl

from kernels import compat, itemsize, seeded, torch_dtype
from kernels.llm import LLAMA_3_8B
from kernels.llm.model import rope_tables, rotate_half
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """The q and k projections' outputs (batch, seq, heads * head_dim) and (batch, seq, kv_heads * head_dim), then
    cos and sin (seq, head_dim) for positions 0..seq-1 (Llama-3's theta)."""
    batch, seq, heads, kv_heads, head_dim = shape
    gen = seeded(seed)
    q = torch.randn((batch, seq, heads * head_dim), generator=gen)
    k = torch.randn((batch, seq, kv_heads * head_dim), generator=gen)
    cos, sin = rope_tables(dataclasses.replace(LLAMA_3_8B, head_dim=head_dim), seq, torch_dtype(dtype), device)
    return q.to(dtype=torch_dtype(dtype), device=device), k.to(dtype=torch_dtype(dtype), device=device), cos, sin


def heads_first(t: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(batch, seq, heads * head_dim) viewed as (batch, heads, seq, head_dim), as HF's attention transposes it."""
    batch, seq, width = t.shape
    return t.view(batch, seq, width // head_dim, head_dim).transpose(1, 2)


def baseline_hf_rotate_half(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                            sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HF's apply_rotary_pos_emb on the transposed q and k (cos and sin broadcast over batch and heads)."""
    q, k = heads_first(q, cos.shape[-1]), heads_first(k, cos.shape[-1])
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


@triton.jit
def _rotate_heads(out_ptr, in_ptr, token, cos_lo, cos_hi, sin_lo, sin_hi, heads, HALF: tl.constexpr,
                  BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    h = tl.arange(0, BLOCK_H)[:, None]
    d = tl.arange(0, BLOCK_D)[None, :]
    mask = (h < heads) & (d < HALF)
    lo = token * heads * 2 * HALF + h * 2 * HALF + d
    x_lo = tl.load(in_ptr + lo, mask=mask, other=0.0).to(tl.float32)
    x_hi = tl.load(in_ptr + lo + HALF, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + lo, (x_lo * cos_lo - x_hi * sin_lo).to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(out_ptr + lo + HALF, (x_hi * cos_hi + x_lo * sin_hi).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(q_out_ptr, k_out_ptr, q_ptr, k_ptr, cos_ptr, sin_ptr, seq, heads, kv_heads, HALF: tl.constexpr,
                 BLOCK_H: tl.constexpr, BLOCK_KV: tl.constexpr, BLOCK_D: tl.constexpr):
    token = tl.program_id(0).to(tl.int64)
    d = tl.arange(0, BLOCK_D)[None, :]
    table = (token % seq) * 2 * HALF + d
    cos_lo = tl.load(cos_ptr + table, mask=d < HALF, other=0.0).to(tl.float32)
    cos_hi = tl.load(cos_ptr + table + HALF, mask=d < HALF, other=0.0).to(tl.float32)
    sin_lo = tl.load(sin_ptr + table, mask=d < HALF, other=0.0).to(tl.float32)
    sin_hi = tl.load(sin_ptr + table + HALF, mask=d < HALF, other=0.0).to(tl.float32)
    _rotate_heads(q_out_ptr, q_ptr, token, cos_lo, cos_hi, sin_lo, sin_hi, heads, HALF, BLOCK_H, BLOCK_D)
    _rotate_heads(k_out_ptr, k_ptr, token, cos_lo, cos_hi, sin_lo, sin_hi, kv_heads, HALF, BLOCK_KV, BLOCK_D)


@torch.library.triton_op("aiperf_ch14::rope_rotate_half", mutates_args=())
def rope_rotate_half(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                     sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE on contiguous (batch, seq, heads * head_dim) q and k in one launch; outputs in the same layout."""
    batch, seq, width = q.shape
    head_dim = cos.shape[-1]
    heads, kv_heads = width // head_dim, k.shape[-1] // head_dim
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    block_h, block_kv = triton.next_power_of_2(heads), triton.next_power_of_2(kv_heads)
    torch.library.wrap_triton(_rope_kernel)[(batch * seq,)](
        q_out, k_out, q, k, cos, sin, seq, heads, kv_heads, HALF=head_dim // 2, BLOCK_H=block_h, BLOCK_KV=block_kv,
        BLOCK_D=triton.next_power_of_2(head_dim // 2), num_warps=4)
    return q_out, k_out


@rope_rotate_half.register_fake
def rope_rotate_half_shapes(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                            sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(q), torch.empty_like(k)


def rope_region(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q_out, k_out = rope_rotate_half(q, k, cos, sin)
    return heads_first(q_out, cos.shape[-1]), heads_first(k_out, cos.shape[-1])


@functools.cache
def compiled_rope_region() -> Any:
    return compat.compile(rope_region, fullgraph=True, dynamic=False)


def optimized_triton_op_in_graph(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                                 sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The compiled region around the Triton op: one kernel, no graph break."""
    return compiled_rope_region()(q, k, cos, sin)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """q and k read once and written once, cos and sin read once; 3 flops per rotated element."""
    batch, seq, heads, kv_heads, head_dim = shape
    rotated = batch * seq * (heads + kv_heads) * head_dim
    return Work(bytes=float(itemsize(dtype) * (2 * rotated + 2 * seq * head_dim)), flops=float(3 * rotated))
