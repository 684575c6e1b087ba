"""Bidirectional copy streams: a device-to-host and a host-to-device copy on one stream vs one stream per direction.

- Baseline: ZeRO-Offload's exchange at one layer of the backward pass, both on torch's current stream: the layer's
  gradients go down to pinned host memory for the CPU optimizer (``non_blocking`` D2H) and the parameters the CPU
  optimizer updated come up from pinned host memory (``non_blocking`` H2D). Both copies are async for the host, but
  one stream runs them in order, so one copy engine and one PCIe direction idle at a time. PCIe-bound, one way.
- Optimized: the H2D copy on a second stream that first waits on the current stream, the D2H on the current stream,
  and the current stream waits on the second before returning. The H100's copy engines for each direction run at
  once over the full-duplex link. PCIe-bound, both ways at once.

Both arms write the same pinned host buffer and the same device buffer (inputs, returned), so they differ only in
the stream the upload is issued on. Shape ``(elements,)``, bf16. Timing shape (218103808,): one Llama-3-8B layer's
weights (attention 41.9 M + MLP 176.2 M = 218.1 M, 436 MB in bf16) in each direction.

Napkin math on an H100 on a PCIe gen5 x16 host link (~50 GB/s per direction with pinned memory):
- work: 436 MB down + 436 MB up (``Work.bytes``, the bound).
- baseline: 436 MB / 50 GB/s twice = ~17.4 ms.
- optimized: both at once: ~8.7 ms if each direction keeps its full rate; ~9.5-11 ms if host memory or the IOMMU
  caps the duplex total at ~80-90 GB/s.
- predicted speedup: ~1.6-2.0x (2x is the ceiling).

Measured (H100 VM, 2026-11-21, three processes at commits c0a8b42, 401dac0, 6242554): 15.8-16.2 ms vs 9.33-10.1 ms,
1.69x, 1.61x and 1.60x, as predicted (at the low end of ~1.6-2.0x): the two directions together moved
86.7-93.5 GB/s, the napkin's ~80-90 GB/s duplex-cap case; one way at a time the baseline moved ~54-55 GB/s (derived:
872 MB / 15.8-16.2 ms).
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Gradients on the device, updated parameters in pinned host memory, a pinned host buffer for the gradients,
    a device buffer for the parameters, and a stream for the upload."""
    gen = seeded(seed)
    grads = normal(gen, shape, dtype, device)
    host = normal(gen, shape, dtype, "cpu")
    params_host = torch.empty_like(host, pin_memory=True).copy_(host)
    grads_host = torch.empty_like(host, pin_memory=True)
    params = torch.empty(shape, dtype=grads.dtype, device=device)
    return grads, params_host, grads_host, params, torch.cuda.Stream(device=device)


def baseline_one_stream(grads: torch.Tensor, params_host: torch.Tensor, grads_host: torch.Tensor,
                        params: torch.Tensor, upload: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients down, then parameters up, both on the current stream: one direction at a time."""
    grads_host.copy_(grads, non_blocking=True)
    params.copy_(params_host, non_blocking=True)
    return grads_host, params


def optimized_stream_per_direction(grads: torch.Tensor, params_host: torch.Tensor, grads_host: torch.Tensor,
                                   params: torch.Tensor, upload: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients down on the current stream while the parameters come up on ``upload``; joined before return."""
    current = torch.cuda.current_stream(grads.device)
    upload.wait_stream(current)
    with torch.cuda.stream(upload):
        params.copy_(params_host, non_blocking=True)
    grads_host.copy_(grads, non_blocking=True)
    current.wait_stream(upload)
    return grads_host, params


def reference(grads: torch.Tensor, params_host: torch.Tensor, grads_host: torch.Tensor, params: torch.Tensor,
              upload: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients on the host and the parameters on the device (copies are exact)."""
    return grads.cpu(), params_host.to(params.device)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Each direction moves every element once over PCIe (the bound)."""
    (elements,) = shape
    return Work(bytes=float(2 * itemsize(dtype) * elements))
