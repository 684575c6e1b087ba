"""Micro-batch fusion: an MLP forward per micro-batch vs the same MLP on the fused batch (goodput in samples/s).

- Baseline: a Python loop runs the MLP once per queued micro-batch and concatenates the outputs; launch-bound
  and weight-bandwidth-bound (every micro-batch re-reads both weight matrices for 8 rows of work).
- Optimized: one MLP call on all queued samples, so each weight is read once per call and the GEMMs are big
  enough to keep the SMs busy; compute-bound (fp32 GEMM, TF32 off as in torch's default).

Shape ``(micro_batches, micro_batch, d_model, d_hidden)``. Timing shape (32, 8, 1024, 4096): an inference
server applying a BERT-large feed-forward block (1024 -> 4096 -> GELU -> 1024) to 32 queued micro-batches of
8 requests each. The queue is one (micro_batches, micro_batch, d_model) buffer, so fusing is a free reshape;
if the micro-batches were separate tensors, fusing would add one 1 MB concatenation (~5 us).

Napkin math on an H100 (fp32):
- work: 256 samples * 4 * 1024 * 4096 = 4.3 GFLOP; bytes 4 B * (2 * 256 * 1024 + 2 * 1024 * 4096) = 35.7 MB.
- baseline: 32 * 3 launches (addmm, gelu, addmm) + 1 cat = 97 launches at ~4-6 us = ~0.4-0.6 ms of host time;
  each micro-batch also re-reads 33.6 MB of weights (~11 us at ~3.0 TB/s, less from the 50 MB L2), so
  ~15 us per micro-batch either way: ~0.5 ms per call.
- optimized: 3 launches; 4.3 GFLOP at ~40-50 TFLOP/s (M = 256 rows only partly fills 132 SMs) = ~90-110 us.
- predicted speedup: ~0.5 ms / ~0.11 ms = ~4.5x (the book measured 4.1x on a B200).

Measured (H100 VM, 2026-11-21, commit f6d976c): 1.71 ms vs 172 us, 9.9x, over 2x the prediction, all of it in
the baseline: 1.71 ms / 97 launches = ~17.6 us per op. Each micro-batch's kernels finish faster than the host
dispatches the next op through torch's Python dispatcher on this VM (a bare launch alone takes 6.6-11 us there,
not the 4-6 us assumed), so the device waits on the host between kernels and the baseline is dispatch-bound.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """Queued activations (micro_batches, micro_batch, d_model) and MLP weights at nn.Linear-like scale."""
    micro_batches, micro_batch, d_model, d_hidden = shape
    gen = seeded(seed)
    x = normal(gen, (micro_batches, micro_batch, d_model), dtype, device)
    w1 = normal(gen, (d_hidden, d_model), dtype, device, std=d_model**-0.5)
    b1 = normal(gen, (d_hidden,), dtype, device, std=0.1)
    w2 = normal(gen, (d_model, d_hidden), dtype, device, std=d_hidden**-0.5)
    b2 = normal(gen, (d_model,), dtype, device, std=0.1)
    return x, w1, b1, w2, b2


def _mlp(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    return F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)


def baseline_per_microbatch(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                            b2: torch.Tensor) -> torch.Tensor:
    """One MLP call per micro-batch, then ``torch.cat``: 3 launches and a full weight read per micro-batch."""
    return torch.cat([_mlp(micro, w1, b1, w2, b2) for micro in x])


def optimized_fused_batch(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                          b2: torch.Tensor) -> torch.Tensor:
    """One MLP call on all samples: the weights are read once and two large GEMMs replace 2 * micro_batches small ones."""
    return _mlp(x.reshape(-1, x.shape[-1]), w1, b1, w2, b2)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Activations in and out once, both weight matrices and biases once; two GEMMs of 2 flops per multiply-add."""
    micro_batches, micro_batch, d_model, d_hidden = shape
    samples = micro_batches * micro_batch
    elements = 2 * samples * d_model + 2 * d_model * d_hidden + d_hidden + d_model
    return Work(bytes=float(itemsize(dtype) * elements), flops=float(4 * samples * d_model * d_hidden),
                items=float(samples), item_name="samples")
