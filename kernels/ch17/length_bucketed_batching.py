"""Batching prompts for a static-shape prefill engine: batches in arrival order vs batches of similar length.

- Baseline: an engine that runs padded batches (static shapes, as CUDA-graph or TensorRT-style engines need, each
  batch padded to its longest prompt) filled with 16 prompts in arrival order: one long prompt makes 15 short ones
  compute its length.
- Optimized: the scheduler sorts each window of 256 waiting prompts by length (a bounded wait: no prompt waits
  for more than its window) and fills the batches from the sorted window, so a batch's prompts are of similar length.
- Mechanism: fewer padding tokens computed; the attention's quadratic term shrinks more than the linear layers'.

Both arms run the same model (``Decoder.hidden_states``: causal attention, right padding, so no real token sees a
pad) and return every prompt's next-token logits, in arrival order. When to prefer which fix: an engine that can run
ragged (varlen) batches removes the padding in the kernel instead (chapter 15's packed steps); this pair is for the
engines that cannot.

Shape ``(hidden, layers, prompts, batch, window, median_len, max_len)``; the hidden size picks the model as in
``kernels/ch15/serving_arms.py`` (64: TINY; 2048: Llama-3.2-1B's layers, 32000-token vocabulary). Prompt lengths
are lognormal (sigma 1) around ``median_len``, clipped to ``max_len // 64 .. max_len``. Timing shape (2048, 4, 1024,
16, 256, 512, 4096): four Llama-3.2-1B layers, 1,024 prompts of median 512 tokens (mean ~800), batches of 16.

Napkin math on an H100 SXM (bf16 GEMMs ~600 TFLOP/s, attention ~400 TFLOP/s):
- tokens, counted over one draw of the timing shape's lengths (seed 0): 0.82 M real; arrival order computes 3.02 M
  (73% padding: a batch's longest of 16 lognormal lengths is ~5.9x the median), sorted windows 0.95 M (14%).
- linear layers at ~0.49 GFLOP per token (four layers): ~2.5 s vs ~0.78 s; causal attention ~0.4 s vs ~0.1 s.
- predicted speedup: 2.5-3.3x on H100 and H200 (compute-bound in both arms: the ratio follows computed tokens).
- floor: ``min_speedup`` 1.75 (70% of the low end, 2.5x).

Precision: both arms in bf16; the default bf16 bound holds for the logits. Workload statistic: each arm's padding
fraction (padding tokens over tokens computed).

Not yet measured on a GPU.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kernels import seeded
from kernels.ch15.serving_arms import served_model
from kernels.llm import Decoder
from kernels.serving import LogNormal
from pytest_aiperf import Work

PAD = 0


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """The model, the prompts right-padded with ``PAD`` (prompts, longest), their lengths (a CPU tensor: the
    scheduler's host-side view), the batch size and the window."""
    hidden, layers, prompts, batch, window, median_len, max_len = shape
    model = served_model(hidden, layers, dtype, seed, device)
    gen = seeded(seed)
    lengths = LogNormal(median_len, 1.0, max(1, max_len // 64), max_len).draw(gen, prompts)
    tokens = torch.full((prompts, max(lengths)), PAD, dtype=torch.long)
    for row, length in enumerate(lengths):
        tokens[row, :length] = torch.randint(1, model.config.vocab, (length,), generator=gen)
    return model, tokens.to(device), torch.tensor(lengths), batch, window


def batches_in_arrival_order(lengths: Sequence[int], batch: int, window: int) -> list[list[int]]:
    """Consecutive runs of ``batch`` prompts."""
    return [list(range(start, min(start + batch, len(lengths)))) for start in range(0, len(lengths), batch)]


def batches_by_length(lengths: Sequence[int], batch: int, window: int) -> list[list[int]]:
    """Each window of ``window`` arrivals sorted by length (stable), cut into runs of ``batch``."""
    out = []
    for start in range(0, len(lengths), window):
        order = sorted(range(start, min(start + window, len(lengths))), key=lambda i: lengths[i])
        out += [order[at:at + batch] for at in range(0, len(order), batch)]
    return out


@torch.no_grad()
def padded_prefill(model: Decoder, tokens: torch.Tensor, lengths: torch.Tensor,
                   batches: Sequence[Sequence[int]]) -> torch.Tensor:
    """Each batch padded to its longest prompt and run through the model; each prompt's last-token logits, in
    arrival order."""
    out = torch.empty((tokens.shape[0], model.config.vocab), dtype=model.dtype, device=tokens.device)
    for members in batches:
        width = int(max(lengths[i] for i in members))
        rows = torch.tensor(members, device=tokens.device)
        hidden = model.hidden_states(tokens[rows, :width])
        last = (lengths[members] - 1).to(tokens.device)
        out[rows] = model.logits(hidden[torch.arange(len(members), device=tokens.device), last])
    return out


def baseline_arrival_order_batches(model: Decoder, tokens: torch.Tensor, lengths: torch.Tensor, batch: int,
                                   window: int) -> torch.Tensor:
    """Padded batches of 16 in arrival order."""
    return padded_prefill(model, tokens, lengths, batches_in_arrival_order(lengths.tolist(), batch, window))


def optimized_length_bucketed_batches(model: Decoder, tokens: torch.Tensor, lengths: torch.Tensor, batch: int,
                                      window: int) -> torch.Tensor:
    """Padded batches of 16 formed from each window sorted by length."""
    return padded_prefill(model, tokens, lengths, batches_by_length(lengths.tolist(), batch, window))


@torch.no_grad()
def reference(model: Decoder, tokens: torch.Tensor, lengths: torch.Tensor, batch: int,
              window: int) -> torch.Tensor:
    """Every prompt alone, unpadded, through the float64 copy of the model."""
    wide = model.as_dtype(torch.float64)
    return torch.cat([wide.logits(wide.hidden_states(tokens[i:i + 1, :int(n)])[:, -1])
                      for i, n in enumerate(lengths)])


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The prompts (``items``): a throughput of prompts prefilled per second."""
    return Work(items=float(shape[2]), item_name="prompts")


def workload(model: Decoder, tokens: torch.Tensor, lengths: torch.Tensor, batch: int,
             window: int) -> dict[str, float]:
    """Each arm's padding fraction: padding tokens over tokens computed."""
    sizes = lengths.tolist()
    out = {}
    for name, batches in (("arrival_order", batches_in_arrival_order), ("length_bucketed", batches_by_length)):
        computed = sum(len(members) * max(sizes[i] for i in members) for members in batches(sizes, batch, window))
        out[f"{name}_padding_fraction"] = 1 - sum(sizes) / computed
    return out
