"""Expandable segments: gradient accumulation over micro-batches whose length changes every step, with the CUDA
caching allocator's default segments vs ``expandable_segments:True``.

Fine-tuning with dynamic padding (Hugging Face's ``DataCollatorWithPadding``) pads each micro-batch to its own
longest sequence, so every step allocates activations, logits and their gradients at a new size. A memory snapshot
of such a run shows the default caching allocator's reserved memory climbing well above what is allocated: a freed
block only serves requests that fit in it, so each new longest length makes the allocator ``cudaMalloc`` fresh
segments sized for it, while the smaller segments of earlier lengths stay cached, split into pieces that the large
requests cannot use. With ``expandable_segments`` the allocator maps physical pages into one growing virtual
segment per stream, so freed pages serve the next request whatever its size, and reserved memory stays near the
allocated peak (PyTorch's CUDA memory notes; NVIDIA/NeMo#9061 for such a run).

- Baseline: the accumulation loop with the default allocator settings.
- Optimized: the same loop with ``expandable_segments:True`` switched on for its duration and the previous setting
  restored after it (``kernels.compat.expandable_segments``). PyTorch's allocator notes (Note [Expandable Segments]
  in ``CUDACachingAllocator.cpp``) allow the switch during a run: the option decides how new memory is added, and
  when it is off no new allocation goes into an expandable segment, so the baseline never grows the optimized arm's
  segment. Where the option cannot be switched while the process runs (the probe in ``kernels.compat`` asks for a
  fresh block under each setting and reads its segment's kind), the arm raises with the probe's reason rather than
  measure the default allocator twice.

The goal is memory, ``memory="reserved"``: the bytes the allocator reserves during one call, its cache emptied
first. Each arm runs the identical loop (bf16 autocast over fp32 master weights; per micro-batch the next-token
loss, scaled by 1/micro-batches, and ``torch.autograd.grad`` added into fp32 accumulators) and returns every
micro-batch's loss and the accumulated gradients. The timed calls share one allocator cache between the arms, and
in steady state neither calls ``cudaMalloc``: the recorded time can only show that the switch costs nothing.

Shape ``(hidden, layers, batch, max_seq, micro_batches)``: the width picks the model (``kernels.ch13.training``);
each micro-batch's length is drawn from the case's seed, uniformly in [max_seq / 8, max_seq]. Timing shape
(2048, 1, 2, 2048, 8): eight micro-batches of 2 sequences of 256-2048 tokens through one Llama-3.2-1B layer and its
tied 128,256-token embedding and head (324 M parameters). The head's logits and their gradients are the blocks that
change size most (1.8 MB per token); one layer rather than sixteen keeps the float64 check of the accumulated bf16
gradients inside the checker's bf16 bound (the worst tensor measured ~1.2e-2 at one layer, 2-2.6e-2 at two, on the
CPU against float64).

Napkin math (the reserved bytes one call adds; the fp32 weights, 1.3 GB, are there before it):
- allocated at a micro-batch of T tokens: the fp32 gradient accumulators (1.3 GB, made in the call) and the step's
  fresh gradients (1.3 GB), one layer's activations ~T x 110 KB, and the head: bf16 logits, their fp32 upcast, the
  loss's saved log-probabilities and the logits' gradients in fp32 and bf16, ~T x 128,256 x 14 B. At T = 4096:
  ~2.6 + 0.45 + 7.4 = ~10.5 GB.
- default: each new longest T adds segments for the blocks that no cached block fits (the 1-2 GB logits blocks
  above all); over a seeded trace with ~2-3 record lengths, reserved ends ~1.2-1.8x the allocated peak.
- expandable: reserved ~ the allocated peak plus page rounding (20 MiB pages in the large pool), ~1.0-1.05x.
- predicted reserved-memory ratio: ~1.1-1.6x on H100 and H200 (the same trace and sizes on both).
- time: ~1.0x (``max_slowdown=1.1``).

Precision: both arms run the same bf16 autocast step (the checker's bf16 rule); the float64 reference accumulates
float64 gradients, one layer's activations at a time.

Measured once on an H100 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording):
2048x1x2x2048x8: 10.1 GiB -> 7.39 GiB, 1.37x [1.37, 1.37].
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import compat, seeded
from kernels.ch13.training import config, decoder, layerwise_grads, next_token_loss, parameters, token_batch
from kernels.llm import Decoder


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Token ids and labels padded to max_seq (micro_batches, batch, max_seq), each micro-batch's length (a tuple
    of ints drawn from the seed), then the seeded model (fp32 master weights)."""
    hidden, layers, batch, max_seq, micro_batches = shape
    cfg = config(hidden, layers)
    gen = seeded(seed)
    lengths = tuple(int(n) for n in torch.randint(max(1, max_seq // 8), max_seq + 1, (micro_batches,), generator=gen))
    tokens, labels = token_batch(gen, (micro_batches, batch, max_seq), cfg.vocab, device)
    return tokens, labels, lengths, decoder(cfg, torch.float32, seed, device, max_positions=max_seq)


def _accumulate(tokens: torch.Tensor, labels: torch.Tensor, lengths: tuple[int, ...],
                model: Decoder) -> tuple[torch.Tensor, ...]:
    params = parameters(model)
    accumulated = [torch.zeros_like(p) for p in params]
    losses = []
    for index, length in enumerate(lengths):
        with torch.autocast(tokens.device.type, dtype=torch.bfloat16):
            logits = model(tokens[index, :, :length])
        loss = next_token_loss(logits, labels[index, :, :length]) / len(lengths)
        for total, grad in zip(accumulated, torch.autograd.grad(loss, params)):
            total.add_(grad)
        losses.append(loss.detach())
    return (torch.stack(losses), *accumulated)


def baseline_default_segments(tokens: torch.Tensor, labels: torch.Tensor, lengths: tuple[int, ...],
                              model: Decoder) -> tuple[torch.Tensor, ...]:
    """Every micro-batch's loss and the accumulated gradients, with the allocator's default segments."""
    return _accumulate(tokens, labels, lengths, model)


def optimized_expandable_segments(tokens: torch.Tensor, labels: torch.Tensor, lengths: tuple[int, ...],
                                  model: Decoder) -> tuple[torch.Tensor, ...]:
    """The same accumulation with the allocator's expandable segments switched on for the call."""
    with compat.expandable_segments():
        return _accumulate(tokens, labels, lengths, model)


def reference(tokens: torch.Tensor, labels: torch.Tensor, lengths: tuple[int, ...],
              model: Decoder) -> tuple[torch.Tensor, ...]:
    """The accumulation in float64 on an exact float64 copy of the model, one layer's activations at a time."""
    model = model.as_dtype(torch.float64)
    losses, accumulated = [], None
    for index, length in enumerate(lengths):
        loss, grads = layerwise_grads(model, tokens[index, :, :length],
                                      lambda logits: next_token_loss(logits, labels[index, :, :length]) / len(lengths))
        accumulated = grads if accumulated is None else [a + g for a, g in zip(accumulated, grads)]
        losses.append(loss)
    return (torch.stack(losses), *accumulated)


def workload(tokens: torch.Tensor, labels: torch.Tensor, lengths: tuple[int, ...], model: Decoder) -> dict[str, float]:
    """The trace that decides the reserved bytes: its longest and mean lengths and how many times a new longest
    length appears (each can make the default allocator reserve new segments)."""
    records, longest = 0, 0
    for length in lengths:
        records, longest = (records + 1, length) if length > longest else (records, longest)
    return {"longest": float(longest), "mean_length": sum(lengths) / len(lengths), "record_lengths": float(records)}

