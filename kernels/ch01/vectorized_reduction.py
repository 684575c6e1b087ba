"""Vectorized reduction: per-sample losses computed one sample at a time vs in one reduction over the batch.

- Baseline: a Python loop calls ``F.mse_loss`` on each sample's row and collects the scalars with
  ``torch.stack`` (the natural way to get per-sample losses for hard-example mining or logging);
  launch-bound (2 launches of ~1 us of work per sample).
- Optimized: ``F.mse_loss(..., reduction="none").mean(dim=-1)``, one elementwise pass and one row
  reduction over the whole batch; launch-latency-bound at this size (the data is 3 MB).

Shape ``(batch, features)``. Timing shape (128, 3072): the per-sample reconstruction loss of an autoencoder
on a batch of 128 CIFAR-10 images (3 x 32 x 32 = 3072 values each).

Napkin math on an H100 (fp32):
- work: 4 B * (2 * 128 * 3072 + 128) = 3.1 MB (~1 us at ~3.0 TB/s); 3 flops per element = 1.2 MFLOP.
- baseline: 128 * 2 launches (squared difference, mean) + 1 stack = 257 launches at ~4-6 us = ~1.0-1.5 ms.
- optimized: 2 launches = ~10 us (launch latency; the kernels themselves take ~2 us).
- predicted speedup: ~1.3 ms / ~10 us = ~100x (launch count ratio 257 / 2, less the fixed latency).

The lesson is the launch path, so the case times host dispatch (``host_dispatch="timed"``): both arms pay
their launches inside the events, the optimized arm its two launches too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstructions and targets (batch, features): normalized pixels and a noisy reconstruction of them."""
    batch, features = shape
    gen = seeded(seed)
    target = normal(gen, (batch, features), dtype, device)
    prediction = target + normal(gen, (batch, features), dtype, device, std=0.3)
    return prediction, target


def baseline_loop_of_losses(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One ``F.mse_loss`` per sample, stacked: two kernel launches per sample plus one for the stack."""
    return torch.stack([F.mse_loss(prediction[i], target[i]) for i in range(prediction.shape[0])])


def optimized_one_reduction(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Elementwise squared error over the whole batch, then one mean per row: two launches in total."""
    return F.mse_loss(prediction, target, reduction="none").mean(dim=-1)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read both tensors once, write one loss per sample; subtract, square and add per element."""
    batch, features = shape
    return Work(bytes=float(itemsize(dtype) * (2 * batch * features + batch)), flops=float(3 * batch * features))
