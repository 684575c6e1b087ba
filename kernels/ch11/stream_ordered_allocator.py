"""Stream-ordered allocator: cudaMalloc/cudaFree of a per-step temporary vs cudaMallocAsync/cudaFreeAsync from a pool.

- Baseline: a loop over steps, each ``cudaMalloc`` of a scratch buffer, two kernels into and out of it, ``cudaFree``.
  What a CUDA C++ programmer writes before meeting the stream-ordered allocator (and what CUB's documented
  two-phase temp-storage pattern looks like when called in a loop). ``cudaFree`` synchronizes the device: the host
  waits for the step's kernels, then pays the driver's unmap, then the next ``cudaMalloc`` maps fresh pages, and
  only then queues the next step. Bound by host-driver round trips: the GPU idles between steps.
- Optimized: the same loop with ``cudaMallocFromPoolAsync`` / ``cudaFreeAsync`` on the launch stream, from a pool
  created once with ``cudaMemPoolAttrReleaseThreshold`` = UINT64_MAX so it keeps its memory. The allocation is a
  stream-ordered operation: no device sync, and a block freed by step s is handed to step s+1 in stream order. The
  host queues all steps ahead of the GPU. Bound by the kernels' HBM traffic.

The two kernels per step (write the unscaled gradient ``g * inv_scale`` to the scratch, then reduce its squares into
the step's output) could be fused; they stand for any operation that needs a temporary (CUB temp storage, a cuBLAS
workspace, a sort's key buffer). Torch code never meets this problem because its caching allocator already keeps
memory; raw CUDA C++ and libraries built on the runtime do.

The lesson is the host-driver path (malloc, free, the device sync inside cudaFree), so the case declares
``host_dispatch="timed"``: the events start when the host starts the call.

Shape ``(steps, n)``, fp32; output ``(steps,)``. Timing shape (32, 4194304): per-layer squared norms of AMP-scaled
gradients (loss scale 65536) for gradient clipping, one step per layer of Llama-3-8B's 32 k_proj weights
(1024 x 4096 = 4.19 M elements, a 16 MB scratch each).

Napkin math on an H100 SXM:
- work: read 32 x 16 MB = 537 MB of gradients; per step also 16 MB written to and read back from the scratch
  (mostly served by the 50 MB L2). GPU time per step ~ (32 MB HBM) / 3.0 TB/s + ~4 us of L2 reads = ~15 us,
  ~0.5 ms for 32 steps.
- optimized: launches are queued ahead (~3 us of host each, 2 per step plus two pool calls of ~1 us), so the GPU
  runs back to back: ~0.5-0.6 ms.
- baseline: per step cudaMalloc of 16 MB (~10-30 us: VA reservation and mapping 8 x 2 MB pages) + 2 launches
  (~5 us) + wait for the step's ~15 us of kernels inside cudaFree + the unmap (~10-30 us) + the relaunch latency
  (~5 us) = ~45-85 us per step, ~1.5-2.7 ms for 32 steps.
- predicted speedup: ~3-5x (2.5-5.5x; the driver's map/unmap cost per 16 MB is the uncertain term).

Measured (H100 VM, 2026-11-21, three processes at commits c0a8b42, 401dac0, 6242554): 5.01, 4.7 and 3.34 ms vs 697,
673 and 652 us: 7.18x, 6.99x and 5.12x, above the predicted ~3-5x. The optimized arm is near its ~0.5-0.6 ms
estimate. The baseline took ~104-157 us per step (derived: / 32 steps), not ~45-85 us, and moved by a third between
processes: it is host-timed, and every step's cudaFree synchronizes the device and waits on the driver, so it
measures the host and driver path, which likely varied with the process (the three ran on different sets of host
CPUs; not profiled). The map/unmap, the napkin's uncertain term, is the likely excess.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work
from pytest_aiperf.build import CudaLibrary

_lib = CudaLibrary(__file__, "stream_ordered_allocator.cu")

LOSS_SCALE = 65536.0


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor]:
    """One row of AMP-scaled gradients per step (unit-normal gradients times the loss scale)."""
    return (normal(seeded(seed), shape, dtype, device, std=LOSS_SCALE),)


def _grad_norms(launcher: Any, grads: torch.Tensor) -> torch.Tensor:
    steps, n = grads.shape
    out = torch.empty(steps, dtype=grads.dtype, device=grads.device)
    launcher(out, grads, steps, n, 1.0 / LOSS_SCALE)
    return out


def baseline_malloc_free_per_step(grads: torch.Tensor) -> torch.Tensor:
    """cudaMalloc + two kernels + cudaFree per step: the free synchronizes the device every step."""
    return _grad_norms(_lib.grad_norms_malloc_free, grads)


def optimized_stream_ordered_pool(grads: torch.Tensor) -> torch.Tensor:
    """cudaMallocFromPoolAsync + two kernels + cudaFreeAsync per step, from a pool that keeps its memory."""
    return _grad_norms(_lib.grad_norms_stream_ordered, grads)


def reference(grads: torch.Tensor) -> torch.Tensor:
    """The per-step sum of squares of the unscaled gradients, in float64."""
    return (grads.double() / LOSS_SCALE).square().sum(dim=1)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read every gradient once and write one value per step; a multiply for the unscale and a multiply-add."""
    steps, n = shape
    return Work(bytes=float(itemsize(dtype) * (steps * n + steps)), flops=float(3 * steps * n))
