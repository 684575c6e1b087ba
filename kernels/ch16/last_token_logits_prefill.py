"""Last-token logits in prefill: the LM head over every prompt position, then the last row kept (``model(ids).logits
[:, -1]``, the default of a Hugging Face causal LM's ``forward``) vs the LM head over the last position only (HF
``generate``'s ``logits_to_keep=1``, vLLM's ``logits_indices``).

- Baseline: the decoder's causal forward over the prompts, the LM head over all batch x seq final hidden states
  (a ``[batch, seq, vocab]`` bf16 tensor), the last position's row copied out in fp32.
- Optimized: the same forward; the final hidden state of each prompt's last position gathered first, the LM head
  over those rows only, in fp32 as above.
- Mechanism: on a 128-152 K-token vocabulary the LM head is 2 x hidden x vocab flops per token, 13-38% of a small
  model's per-token GEMM work, and its output is the largest tensor of the forward; prefill needs one row of it.
  The weaker baseline, the fp32 upcast of the whole logits tensor that HF's heads did before
  huggingface/transformers#30860, is not the one measured.

Shape ``(hidden, layers, batch, seq)``; the hidden size names the model (``kernels.ch14.config_for``). Timing shapes:
(2048, 16, 16, 2048), the whole Llama-3.2-1B (vocabulary 128256, tied) on 16 prompts of 2048 tokens, and
(896, 24, 16, 2048), the whole Qwen2.5-0.5B (vocabulary 151936, tied). bf16.

Napkin math on an H100 SXM (bf16 GEMMs ~700 TFLOP/s, ~500 at Qwen's 896-wide layers; 3.0 TB/s measured copy), 32,768
prompt tokens:
- Llama-3.2-1B: layers 2 x 32,768 x 16 x 60.8 M = 63.8 TFLOP = ~91 ms, eager elementwise traffic (``kernels/ch14``'s
  ~305 KB per token per layer) 160 GB = ~53 ms, causal flash attention 2.3 TFLOP = ~5 ms: ~150 ms common to both.
  LM head over every position 2 x 32,768 x 2048 x 128,256 = 17.2 TFLOP = ~25 ms, writing 8.4 GB of logits (~3 ms)
  vs 16 rows (~0.1 ms): ~178 vs ~150 ms, 1.18x.
- Qwen2.5-0.5B: layers 2 x 32,768 x 358 M = 23.5 TFLOP = ~47 ms, elementwise ~150 KB per token per layer = 118 GB =
  ~39 ms, attention ~2 ms: ~88 ms common; head 8.9 TFLOP = ~18 ms and 10 GB of logits (~3 ms): ~109 vs ~88 ms, 1.24x.
- H200 (4.25 TB/s, same GEMM rate): the common elementwise part shrinks by ~30%: 1.2x and 1.27x.
- predicted speedup: 1.12-1.25x (Llama-3.2-1B), 1.15-1.3x (Qwen2.5-0.5B); floor ``min_speedup`` 1.05 (70% of the low
  end is below it). The memory twin, ``last_token_logits_prefill_memory``, gates the peak.

Not yet measured on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import seeded, torch_dtype
from kernels.ch14 import config_for, decoder_params, unchanged
from kernels.ch16.prefill import prompt_model
from pytest_aiperf import Stateful, Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """The prompts' token ids (batch, seq), then the model's seeded parameters."""
    hidden, layers, batch, seq = shape
    cfg = config_for(hidden).with_layers(layers)
    gen = seeded(seed)
    ids = torch.randint(0, cfg.vocab, (batch, seq), generator=gen).to(device)
    return (ids, *decoder_params(cfg, torch_dtype(dtype), seed, device))


def _state(ids: torch.Tensor, *params: torch.Tensor) -> tuple[Any, ...]:
    return prompt_model(params), ids


@torch.no_grad()
def every_position_head(state: tuple[Any, ...]) -> torch.Tensor:
    """Logits at every position, then the last one's row in fp32: (batch, vocab)."""
    model, ids = state
    return model(ids)[:, -1].float()


@torch.no_grad()
def last_position_head(state: tuple[Any, ...]) -> torch.Tensor:
    """The last position's final hidden state, then the LM head on it alone, in fp32: (batch, vocab)."""
    model, ids = state
    return model.logits(model.hidden_states(ids)[:, -1]).float()


def reference(ids: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """The last-position head in the parameters' dtype (float64 in the checks: the every-position head would hold
    batch x seq x vocab float64 logits)."""
    return last_position_head(_state(ids, *params))


baseline_every_position_head = Stateful(setup=_state, run=every_position_head, reset=unchanged)
optimized_last_position_head = Stateful(setup=_state, run=last_position_head, reset=unchanged)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The optimized arm's work: weights read once, 2 flops per multiply-add of the projections, causal attention
    and the LM head over the last positions."""
    hidden, layers, batch, seq = shape
    cfg = config_for(hidden).with_layers(layers)
    tokens = batch * seq
    attention = 4 * layers * batch * cfg.heads * cfg.head_dim * seq * seq / 2
    flops = 2 * tokens * layers * cfg.params_per_layer + attention + 2 * batch * hidden * cfg.vocab
    weights = layers * cfg.params_per_layer + cfg.vocab * hidden
    return Work(bytes=float(torch_dtype(dtype).itemsize * weights), flops=float(flops), items=float(tokens),
                item_name="prompt tokens")
