"""Overlapped prefetch: a training-style loop that copies then computes vs pinned copies prefetched under the compute.

- Baseline: the loop everyone writes first: per step, ``batch.to(device)`` from pageable host memory (a
  blocking copy staged through the driver's bounce buffers), then the model on it. Copy and compute strictly
  alternate and the GPU idles during every copy. PCIe-bound at the pageable rate, plus the compute.
- Optimized: the batches sit in pinned memory (as a DataLoader with ``pin_memory=True`` hands them over) and a
  side stream copies step i+1 into the second of two reused device slots while the compute stream runs the
  model on step i. PCIe-bound at the pinned DMA rate, with the compute hidden behind the copies.

Chapter 1's ``pinned_prefetch`` isolates the pinned DMA with a negligible consumer; here the consumer is a real
layer, so the overlap is part of the win. The model is the first layer of a ViT-B/16 (16x16 patches projected
to 768 features by a matmul, fp32 without TF32 as torch defaults to) followed by GELU and a mean over patches.
Neither arm pays for producing or pinning the host data (a DataLoader's pin thread does that off the step).

Shape ``(steps, batch, channels, height, width)``, height and width multiples of 16. Timing shape
(8, 32, 3, 224, 224): eight training steps of 32 fp32 ImageNet images (19.3 MB each, 154 MB per call).

Napkin math on an H100 on a PCIe gen5 x16 host link:
- work: 154 MB over PCIe (``Work.bytes``, the bound); 8 * 7.4 GFLOP = 59 GFLOP for the patch projections.
- compute per step: the patchify copy (~15 us), a 6272x768x768 fp32 matmul at ~50 TFLOP/s (~0.15 ms), GELU
  and the mean (~20 us): ~0.19 ms.
- baseline: 8 * (pageable copy at ~10-20 GB/s, 1.0-1.9 ms + 0.19 ms) = ~10-17 ms.
- optimized: 8 pinned copies at ~50 GB/s = 8 * 0.39 ms = 3.1 ms, compute hidden except the last step's: ~3.3 ms.
- predicted speedup: ~13 ms / ~3.3 ms = ~4x (3-5x); without the overlap (pinned but serial) it would be ~4.6 ms.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import double_buffered, itemsize, normal, seeded
from pytest_aiperf import Work

PATCH = 16
EMBED = 768


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Pageable host batches, the same values pinned, the patch projection on the device, and a copy stream."""
    steps, batch, channels, height, width = shape
    gen = seeded(seed)
    host = normal(gen, shape, dtype, "cpu")
    staging = torch.empty_like(host, pin_memory=True).copy_(host)
    features = channels * PATCH * PATCH
    weight = normal(gen, (EMBED, features), dtype, device, std=features**-0.5)
    bias = normal(gen, (EMBED,), dtype, device, std=0.02)
    return host, staging, weight, bias, torch.cuda.Stream(device=device)


def _patch_embed_pool(images: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(batch, channels, height, width) -> 16x16 patches -> linear to 768 -> GELU -> mean over patches."""
    batch, channels, height, width = images.shape
    patches = images.view(batch, channels, height // PATCH, PATCH, width // PATCH, PATCH)
    patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, -1, channels * PATCH * PATCH)
    return F.gelu(F.linear(patches, weight, bias)).mean(dim=1)


def baseline_copy_then_compute(host: torch.Tensor, staging: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                               copy_stream: Any) -> torch.Tensor:
    """Per step: blocking pageable copy to a fresh device tensor, then the layer; copy and compute alternate."""
    return torch.stack([_patch_embed_pool(host[step].to(weight.device), weight, bias) for step in range(host.shape[0])])


def optimized_overlapped_prefetch(host: torch.Tensor, staging: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                                  copy_stream: Any) -> torch.Tensor:
    """Pinned batches DMA'd on a side stream into two reused device slots while the compute stream runs the layer
    (``kernels.double_buffered`` orders the streams and joins the side stream before returning)."""
    return double_buffered(staging, copy_stream, lambda slot: _patch_embed_pool(slot, weight, bias))


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Every image crosses PCIe once (the bound); 2 flops per multiply-add of the patch projection."""
    steps, batch, channels, height, width = shape
    patches = steps * batch * (height // PATCH) * (width // PATCH)
    return Work(bytes=float(itemsize(dtype) * steps * batch * channels * height * width),
                flops=float(2 * patches * channels * PATCH * PATCH * EMBED))
