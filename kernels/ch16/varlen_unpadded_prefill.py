"""Variable-length prefill: a batch of prompts padded to the longest (Hugging Face's batched ``forward``) vs packed
into one row of real tokens with per-prompt attention (vLLM's flattened batch, FlashAttention's ``cu_seqlens``).

- Baseline: ``kernels.ch16.prefill.padded_last_hidden``: the prompts left-padded to the longest, HF's position ids
  and a boolean ``[batch, 1, longest, longest]`` causal + padding mask; the KV heads repeated per query group
  (``repeat_kv``, as transformers does whenever it passes a mask). Every projection, norm and MLP runs over batch x
  longest rows, and SDPA with an arbitrary mask runs the memory-efficient kernel over the whole rectangle.
- Optimized: ``packed_last_hidden``: the real tokens only, in one packed row, each prompt's attention causal over
  its own keys (FlashAttention with ``enable_gqa``, which skips the upper triangle), one SDPA call per prompt and
  layer. ``torch.nn.attention.varlen.varlen_attn`` (2.10+) would take all prompts in one call through
  ``cu_seqlens``; its signature on the GPU machine's torch 2.11 is unverified, so the arm keeps per-prompt SDPA.
- Mechanism: the padded fraction of the batch is not computed at all, and attention does half the work of the real
  tokens' square instead of the padded rectangle's.
- Both: the LM head over each prompt's last token; its logits (fp32) are the output (the TTFT part of a prefill).

Shape ``(hidden, layers, prompts, median, longest)``: the model (``kernels.ch14.config_for``: 64 TINY, 2048
Llama-3.2-1B) with ``layers`` layers, and ``prompts`` prompt lengths drawn from a seeded lognormal (median
``median``, sigma 0.8, clipped to 16..``longest``; 1.. for the check shapes), a long-tailed chat-prompt mix. Timing
shape (2048, 16, 32, 512, 2048): the whole Llama-3.2-1B (128256-token vocabulary) on 32 prompts, bf16.

Workload statistic: the padding fraction, 1 - real tokens / (prompts x longest prompt). Over 200 seeds of the timing
distribution it is 0.52-0.77 (mean 0.66, ~21,000 real tokens against a 2048 x 32 = 65,536-token rectangle).

Napkin math on an H100 SXM (bf16 GEMMs ~700 TFLOP/s, 3.0 TB/s measured copy), at the mean padding:
- linear layers: 1.95 GFLOP per token through 16 layers: 65,536 padded tokens 128 TFLOP = ~183 ms vs ~21,000 real
  tokens 41 TFLOP = ~59 ms.
- eager elementwise traffic (norms with their fp32 upcast, RoPE, SwiGLU, residual adds; ``kernels/ch14``'s count,
  ~305 KB per token per layer): 320 GB = ~107 ms vs 103 GB = ~34 ms.
- attention: the masked rectangle, 4 x 32 x 32 x 2048^2 x 64 x 16 layers = 17.6 TFLOP at ~300 TFLOP/s for the
  memory-efficient kernel = ~59 ms, plus its mask tiles read per head (up to 69 GB, ~23 ms) and ``repeat_kv``'s
  copies (4x the K and V of the rectangle, 8.6 GB written and read, ~6 ms); packed causal flash over sum(L_i^2)
  ~ 21.7 M: 1.4 TFLOP = ~3 ms (512 small launches, hidden under the GPU-bound work).
- total ~378 ms vs ~96 ms: ~3.9x at padding 0.66, ~2.7x at 0.52. H200 (4.25 TB/s; the same GEMM rate): ~333 vs
  ~86 ms, the same ratios within 5%.
- predicted speedup: 2.5-4x on both (it follows the padding fraction); floor ``min_speedup`` 1.75 (70% of 2.5).

Not yet measured on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import seeded, torch_dtype
from kernels.ch14 import config_for, decoder_params, unchanged
from kernels.ch16.prefill import packed_last_hidden, padded_last_hidden, prompt_model
from kernels.serving.trace import LogNormal
from pytest_aiperf import Stateful, Work

SIGMA = 0.8


def lengths_of(shape: tuple[int, ...], gen: torch.Generator) -> list[int]:
    """The prompts' lengths: lognormal around ``median``, clipped to 16..longest (1..longest below 64 tokens)."""
    _, _, prompts, median, longest = shape
    return LogNormal(median, SIGMA, 16 if longest >= 64 else 1, longest).draw(gen, prompts)


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """The prompts' token ids packed end to end (tokens,), their lengths (a CPU int64 tensor: a server knows them on
    the host), then the model's seeded parameters."""
    hidden, layers = shape[:2]
    cfg = config_for(hidden).with_layers(layers)
    gen = seeded(seed)
    lengths = lengths_of(shape, gen)
    ids = torch.randint(0, cfg.vocab, (sum(lengths),), generator=gen).to(device)
    return (ids, torch.tensor(lengths), *decoder_params(cfg, torch_dtype(dtype), seed, device))


def _state(ids: torch.Tensor, lengths: torch.Tensor, *params: torch.Tensor) -> tuple[Any, ...]:
    return prompt_model(params), ids, lengths.tolist()


def padded_prefill(state: tuple[Any, ...]) -> torch.Tensor:
    """Last-token logits (prompts, vocab), fp32, of the padded batch."""
    model, ids, lengths = state
    return model.logits(padded_last_hidden(model, ids, lengths)).float()


def packed_prefill(state: tuple[Any, ...]) -> torch.Tensor:
    """Last-token logits (prompts, vocab), fp32, of the packed prompts."""
    model, ids, lengths = state
    return model.logits(packed_last_hidden(model, ids, lengths)).float()


def reference(ids: torch.Tensor, lengths: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """The packed computation in the parameters' dtype (float64 in the checks): each prompt alone, so it is the
    function both arms compute; the padded one in float64 would hold a float64 score rectangle per head."""
    return packed_prefill(_state(ids, lengths, *params))


baseline_padded_batch = Stateful(setup=_state, run=padded_prefill, reset=unchanged)
optimized_packed_varlen = Stateful(setup=_state, run=packed_prefill, reset=unchanged)


def workload(ids: torch.Tensor, lengths: torch.Tensor, *params: torch.Tensor) -> dict[str, float]:
    """The padding fraction of the baseline's rectangle: what the optimized arm does not compute."""
    count = lengths.numel() * int(lengths.max())
    return {"padding_fraction": 1.0 - int(lengths.sum()) / count}


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The real tokens' work, at the length distribution's mean (4,096 seeded draws): weights read once, 2 flops per
    multiply-add of the projections, causal attention over each prompt and the LM head on the last tokens."""
    hidden, layers, prompts = shape[:3]
    cfg = config_for(hidden).with_layers(layers)
    draws = torch.tensor(lengths_of((*shape[:2], 4096, *shape[3:]), seeded(0)), dtype=torch.float64)
    tokens, squares = prompts * float(draws.mean()), prompts * float(draws.pow(2).mean())
    attention = 4 * layers * cfg.heads * cfg.head_dim * squares / 2
    flops = 2 * tokens * layers * cfg.params_per_layer + attention + 2 * prompts * hidden * cfg.vocab
    weights = layers * cfg.params_per_layer + cfg.vocab * hidden
    return Work(bytes=float(torch_dtype(dtype).itemsize * weights), flops=float(flops), items=tokens,
                item_name="prompt tokens")
