"""Grid parallelism: SAXPY in one 1024-thread block vs a grid of one thread per element (an introductory pair).

- Baseline: ``<<<1, 1024>>>`` with a block-stride loop, the first CUDA kernel of many tutorials; the one block
  runs on one SM, so 131 of the H100's 132 SMs idle. Bound: one SM's memory-level parallelism (latency-bound).
- Optimized: one thread per element, ``ceil(n / 256)`` blocks of 256 threads spread over every SM. Bound: HBM.

This is the book's first lesson, kept because it is the single most common beginner mistake; the win is large
by construction (1 SM vs 132), not a subtle optimization.

Shape ``(n,)``. Timing shape (16777216,): BLAS ``y = a * x + y`` on 16.8 M fp32 values, e.g. the update
``w - lr * g`` of an SGD step over a 16.8 M-parameter block (written to a new tensor so the arm is pure).

Napkin math on an H100 (fp32):
- work: read x and y, write out: 3 * 67 MB = 201 MB; 2 flops per element = 34 MFLOP (negligible).
- baseline: one SM keeps 1024 threads * ~8 loads (the compiler unrolls the loop 4x) * 4 B = ~32 KB in flight;
  at ~0.7-1 us of loaded DRAM latency that is ~35-50 GB/s, and one SM's port to the memory system caps near
  ~100 GB/s anyway: 201 MB / ~40-80 GB/s = ~2.5-5 ms.
- optimized: 201 MB at ~2.8 TB/s (the copy ceiling less the write-allocate overhead) = ~72 us, 1 launch.
- predicted speedup: ~3.5 ms / ~75 us = ~45x (30-70x, set by the single SM's achieved bandwidth).

Measured (H100 VM, 2026-11-21, commit f6d976c): 6.91 ms vs 72 us, 96x, about 2x the prediction. The optimized arm
is where predicted (93% of the copy ceiling); the one SM sustains 29 GB/s, below the 35-50 GB/s estimate. With
~32 KB in flight that is ~1.1 us per round trip: the loaded latency the estimate took as 0.7-1 us is longer for
a single SM's queue, or the compiler keeps fewer loads in flight than assumed (not yet checked in the SASS).
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work
from pytest_aiperf.build import CudaLibrary

_lib = CudaLibrary(__file__, "grid_parallelism.cu")
ALPHA = -0.01


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """x (the gradient) and y (the weights), unit-normal fp32, and the scale alpha (a learning rate of 0.01)."""
    (n,) = shape
    gen = seeded(seed)
    return normal(gen, (n,), dtype, device), normal(gen, (n,), dtype, device), ALPHA


def baseline_single_block(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """One block of 1024 threads strides over all n elements: one SM does all the work."""
    out = torch.empty_like(y)
    _lib.saxpy_single_block(out, x, y, alpha, x.numel())
    return out


def optimized_full_grid(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """One thread per element in blocks of 256: every SM streams its share of the vectors."""
    out = torch.empty_like(y)
    _lib.saxpy_full_grid(out, x, y, alpha, x.numel())
    return out


def reference(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * x + y`` in float64 (the kernels take fp32 only)."""
    return alpha * x.double() + y.double()


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read x and y once, write the result once; a multiply and an add per element."""
    (n,) = shape
    return Work(bytes=float(itemsize(dtype) * 3 * n), flops=float(2 * n))
