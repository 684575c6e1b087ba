"""torch.compile on one Llama decoder block (prefill, bf16): the eager Hugging Face-style block vs the same module
compiled by Inductor.

- Baseline: one ``kernels.llm.DecoderLayer`` in eager PyTorch, written as HF's ``modeling_llama.py`` writes it:
  RMSNorm with the fp32 upcast (cast, pow, mean, rsqrt, multiply, cast back, weight), rotate-half RoPE on q and k
  (multiply, slice, negate, cat, multiply, add), causal SDPA with ``enable_gqa`` (FlashAttention), the SwiGLU MLP
  and two residual adds. Every elementwise op is its own kernel and its own round trip through HBM.
- Optimized: the same module through ``torch.compile`` (default mode, static shapes): Inductor fuses each RMSNorm
  into one kernel (the first residual add into the second norm), RoPE on q and k into one, SiLU and the gate product
  into one. The seven projections stay cuBLAS GEMMs and attention stays SDPA's flash kernel, so the compiler can only
  win the elementwise traffic: on these GEMM-bound shapes it barely wins, and this pair says so.

Shape ``(hidden, batch, seq)``; the hidden size names the model (``kernels.ch14.config_for``). Timing shapes:
(2048, 8, 2048), 16384 tokens through one Llama-3.2-1B block (hidden 2048, 32/8 heads of 64, MLP 8192), and
(4096, 4, 2048), 8192 tokens through one Llama-3-8B block (hidden 4096, 32/8 heads of 128, MLP 14336). bf16.

Napkin math (H100 SXM: ~3.0 TB/s copy, ~700 TFLOP/s on these GEMMs; H200: ~4.25 TB/s, same GEMMs):
- L1B, T = 16384: GEMMs 2 x T x 60.8 M weights = 1.99 TFLOP = ~2.85 ms; causal flash attention 4 x 8 x 32 x 2048^2
  x 64 / 2 = 0.14 TFLOP = ~0.35 ms. One hidden-sized bf16 tensor is 67 MB. Eager elementwise traffic: each RMSNorm
  ~1.2 GB (the fp32 copy, pow, product and casts each read and write it), RoPE ~10x the 84 MB of q and k = 0.84 GB,
  residual adds 0.4 GB, SwiGLU 1.34 GB (three 268 MB passes over the MLP activations): ~5.0 GB = ~1.67 ms (H100) /
  ~1.18 ms (H200). Compiled: ~1.6 GB (each fused kernel reads its inputs and writes its output once; the SiLU
  product still reads gate and up and writes one) = ~0.53 / ~0.37 ms.
  Eager ~4.9 ms vs compiled ~3.7 ms on the H100 (1.3x); ~4.4 vs ~3.6 ms on the H200 (1.2x).
- L8B, T = 8192: GEMMs 2 x T x 218 M = 3.57 TFLOP = ~5.1 ms; attention ~0.25 ms; the hidden tensor is again 67 MB
  and the MLP activations 235 MB: eager elementwise ~4.8 GB = ~1.6 / ~1.13 ms, compiled ~1.5 GB = ~0.5 / ~0.35 ms.
  Eager ~6.95 ms vs compiled ~5.85 ms (1.19x) on the H100; 6.5 vs 5.7 ms (1.14x) on the H200.
- predicted speedup: H100 1.2-1.35x (L1B), 1.1-1.2x (L8B); H200 1.15-1.3x (L1B), 1.08-1.15x (L8B). The bigger the
  GEMMs relative to the hidden size, the less is left to fuse.

Compilation (tens of seconds per shape on the GPU host) is its first call, timed apart and reported, never a
sample. Measured once on an H100 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording):
2048x8x2048: 5.29 ms -> 3.67 ms, 1.44x [1.42, 1.46]; 4096x4x2048: 7.38 ms -> 5.86 ms, 1.26x [1.25, 1.27].
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import compat, seeded, torch_dtype
from kernels.ch14 import config_for, unchanged
from kernels.llm import DecoderLayer, LlamaConfig
from kernels.llm.model import rope_tables
from kernels.llm.weights import parameter_draws
from pytest_aiperf import Stateful, Work

LAYER = "layers.0."


def layer_draws(cfg: LlamaConfig) -> list[tuple[str, tuple[int, ...], float, float]]:
    """(name in ``DecoderLayer``, shape, mean, std) of the first layer's parameters, as ``kernels.llm.weights``
    draws them for the whole model (the residual projections scaled for its full depth)."""
    return [(name[len(LAYER):], shape, mean, std) for name, shape, mean, std in parameter_draws(cfg)
            if name.startswith(LAYER)]


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """The hidden states (batch, seq, hidden), RoPE cos and sin of positions 0..seq-1, then the block's weights."""
    hidden, batch, seq = shape
    cfg = config_for(hidden)
    gen = seeded(seed)
    x = torch.randn((batch, seq, hidden), generator=gen).to(dtype=torch_dtype(dtype), device=device)
    weights = [torch.randn(size, generator=gen).mul_(std).add_(mean).to(dtype=torch_dtype(dtype), device=device)
               for _, size, mean, std in layer_draws(cfg)]
    return (x, *rope_tables(cfg, seq, torch_dtype(dtype), device), *weights)


def build_block(x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> DecoderLayer:
    """A ``DecoderLayer`` of the model x's hidden size, holding copies of ``weights`` in x's dtype and device."""
    cfg = config_for(x.shape[-1])
    block = DecoderLayer(cfg, dtype=x.dtype, device="meta").to_empty(device=x.device)
    block.load_state_dict({name: w for (name, *_), w in zip(layer_draws(cfg), weights)})
    return block.requires_grad_(False)


def eager_block(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *weights: torch.Tensor) -> tuple[Any, ...]:
    return build_block(x, weights), x, cos, sin


def compiled_block(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *weights: torch.Tensor) -> tuple[Any, ...]:
    return compat.compile(build_block(x, weights), dynamic=False), x, cos, sin


@torch.no_grad()
def prefill_block(state: tuple[Any, ...]) -> torch.Tensor:
    """The block over the whole sequence, causal: its output hidden states (batch, seq, hidden)."""
    block, x, cos, sin = state
    return block(x, cos, sin)


def reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
    """The eager block in the inputs' dtype (float64 in the checks)."""
    return prefill_block(eager_block(x, cos, sin, *weights))


baseline_eager_hf_block = Stateful(setup=eager_block, run=prefill_block, reset=unchanged)
optimized_compiled_block = Stateful(setup=compiled_block, run=prefill_block, reset=unchanged)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Weights and the hidden states read once, the output written once; 2 flops per multiply-add of the
    projections and of causal attention (half the score matrix)."""
    hidden, batch, seq = shape
    cfg = config_for(hidden)
    tokens = batch * seq
    weights = cfg.params_per_layer
    attention = 4 * batch * cfg.heads * seq * seq * cfg.head_dim // 2
    size = torch_dtype(dtype).itemsize
    return Work(bytes=float(size * (weights + 2 * tokens * hidden)), flops=float(2 * tokens * weights + attention),
                items=float(tokens), item_name="tokens")
