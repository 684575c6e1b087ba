"""FlexAttention with a score modification: Gemma-2's soft-capped causal attention as Hugging Face's eager path
computes it vs ``flex_attention`` with the cap as a ``score_mod`` and the causal mask as a block mask, compiled.

- Baseline: Gemma-2's ``eager_attention_forward`` (the path HF uses for Gemma-2 because SDPA cannot apply a soft
  cap): repeat the KV heads for GQA, ``q @ k^T * scaling``, ``cap * tanh(scores / cap)`` as three ops, an additive
  causal mask, softmax in fp32 cast back to bf16, ``@ v``. Every step materializes the (batch, heads, seq, seq) score
  matrix; with the fp32 softmax that is ~36 bytes of HBM traffic per score.
- Optimized: ``flex_attention(q, k, v, score_mod=softcap, block_mask=causal, scale=scaling, enable_gqa=True)``
  through ``torch.compile``: Inductor generates one fused attention kernel with the tanh applied to each score in
  registers, online softmax, no score matrix in memory, and the block mask skips the key blocks above the diagonal.
  Uncompiled, flex_attention would materialize the scores itself; compiled with more shapes than the recompile limit
  it silently falls back to that (vllm-project/vllm#27178), which the plugin's fail_on_recompile guard would catch.

Both arms keep their mask across calls, built once per sequence length as a model builds it once per forward for all
its layers: the baseline's additive (seq, seq) mask, the optimized arm's ``BlockMask``.

Shape ``(batch, heads, kv_heads, seq, head_dim)``, bf16. Timing shapes: Gemma-2-9B's attention (16 query heads, 8 KV
heads of 256, query_pre_attn_scalar 256 so scaling 1/16, attn_logit_softcapping 50) over (1, 8192) and (4, 4096)
tokens, a global (not sliding-window) layer.

Inputs: k and v are unit-variance; so are the queries of the timing shapes, which makes q.k * scaling unit-variance
(the tanh costs the same whatever its argument). Sequences of up to ``SHORT`` tokens, the check shapes, draw queries
with std 24, so the scores reach the tens where the cap bends them and a missing cap fails the check: measured on the
CPU over 12 seeds of both check shapes, flex without the score_mod misses the check's bound by 1.8x or more, while the
eager baseline's own error stays at most 0.026 (the bf16 bound is 0.03). Long sequences cannot have such scores in
the check: HF's eager path, rounding each step of the scores to bf16, exceeds the bf16 bound itself (0.048 relative
error at seq 2048, head_dim 256, std 24; 0.0047 at std 1).

Napkin math, (1, 16, 8, 8192, 256) (H100 SXM ~3.0 TB/s, ~700 TFLOP/s bf16; H200 ~4.25 TB/s):
- scores: 16 x 8192^2 = 1.07 G. Eager traffic: the QK^T product writes 2.1 GB (bf16), the scaling, the division,
  the tanh and the multiplication each read and write it (4 x 4.3 GB), the mask add 4.4 GB, the fp32 softmax reads
  2.1 and writes 4.3 GB, the cast back 6.4 GB, the PV product reads 2.1 GB: ~39 GB = ~13 ms (H100) / ~9.2 ms
  (H200). The two GEMMs over the full square: 2 x 2 x 16 x 8192^2 x 256 = 1.1 TFLOP = ~1.6 ms. Peak extra memory
  ~8.6 GB (bf16 scores, fp32 probabilities, their bf16 copy).
- flex: half the square (causal blocks skipped): 0.55 TFLOP at an assumed 250-400 TFLOP/s for head_dim 256 with a
  tanh per score = ~1.4-2.2 ms; memory O(seq).
- (4, 16, 8, 4096, 256) is the same count of scores and flops, so the same times.
- predicted speedup: H100 6.5-10x (~14.6 ms vs ~1.4-2.2 ms), H200 4.9-7.6x (~10.8 ms vs the same flex time).

Risks: head_dim 256 needs flex's smaller default tiles (shared memory); if torch 2.11 rejects it on the H100, say so
here rather than change Gemma's shape. Not yet measured on a GPU.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from kernels import compat, itemsize, seeded, torch_dtype
from pytest_aiperf import Work

SOFTCAP = 50.0
SHORT, CHECK_QUERY_STD = 256, 24.0


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """q (batch, heads, seq, head_dim), k and v (batch, kv_heads, seq, head_dim); queries of sequences up to
    ``SHORT`` tokens scaled so the cap matters (see the module docstring)."""
    batch, heads, kv_heads, seq, head_dim = shape
    gen = seeded(seed)

    def draw(count: int, std: float) -> torch.Tensor:
        data = torch.randn((batch, count, seq, head_dim), generator=gen) * std
        return data.to(dtype=torch_dtype(dtype), device=device)

    return draw(heads, CHECK_QUERY_STD if seq <= SHORT else 1.0), draw(kv_heads, 1.0), draw(kv_heads, 1.0)


def repeat_kv(t: torch.Tensor, groups: int) -> torch.Tensor:
    """HF's repeat_kv: each KV head repeated for the query heads of its group, (batch, heads, seq, head_dim)."""
    batch, kv_heads, seq, head_dim = t.shape
    return t[:, :, None].expand(batch, kv_heads, groups, seq, head_dim).reshape(batch, kv_heads * groups, seq,
                                                                                 head_dim)


@functools.lru_cache(maxsize=4)
def additive_causal_mask(seq: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """HF's 4-D causal mask for one sequence: 0 where a query sees a key, the dtype's minimum above the diagonal."""
    return torch.full((seq, seq), torch.finfo(dtype).min, dtype=dtype, device=device).triu(1)


def baseline_hf_eager_softcap(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Gemma-2's eager attention: materialized scores, soft cap, additive causal mask, fp32 softmax."""
    scaling = q.shape[-1] ** -0.5
    key, value = repeat_kv(k, q.shape[1] // k.shape[1]), repeat_kv(v, q.shape[1] // v.shape[1])
    scores = torch.matmul(q, key.transpose(2, 3)) * scaling
    scores = scores / SOFTCAP
    scores = torch.tanh(scores)
    scores = scores * SOFTCAP
    scores = scores + additive_causal_mask(q.shape[2], q.dtype, q.device)
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(weights, value)


def softcap(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor,
            kv_idx: torch.Tensor) -> torch.Tensor:
    return SOFTCAP * torch.tanh(score / SOFTCAP)


def causal(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    return q_idx >= kv_idx


@functools.lru_cache(maxsize=4)
def causal_block_mask(seq: int, device: torch.device) -> BlockMask:
    """The causal ``BlockMask`` for one sequence length, shared by every batch row and head."""
    return create_block_mask(causal, B=None, H=None, Q_LEN=seq, KV_LEN=seq, device=device)


@functools.cache
def compiled_flex_attention() -> Any:
    return compat.compile(flex_attention, dynamic=False)


def optimized_flex_softcap(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One generated kernel: the cap applied to each score in registers, causal blocks skipped, GQA by index."""
    return compiled_flex_attention()(q, k, v, score_mod=softcap, block_mask=causal_block_mask(q.shape[2], q.device),
                                     scale=q.shape[-1] ** -0.5, enable_gqa=True)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """q, k, v read once and the output written once; 2 flops per multiply-add of QK^T and PV over the causal half
    of the score matrix."""
    batch, heads, kv_heads, seq, head_dim = shape
    elements = batch * seq * head_dim * (2 * heads + 2 * kv_heads)
    return Work(bytes=float(itemsize(dtype) * elements), flops=float(2 * batch * heads * seq * seq * head_dim))
