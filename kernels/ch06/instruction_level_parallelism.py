"""Instruction-level parallelism: a sum of squares with one accumulator and 4-byte loads vs four accumulators fed
by independent 16-byte loads, at the same fixed thread count.

- Baseline: a persistent reduction, one 256-thread block per SM (one partial sum per block, added with one atomic);
  each thread strides through the vector with ``acc = fmaf(x[i], x[i], acc)``. The compiler already unrolls the
  loop 4x and hoists the loads (its SASS: 4 ``LDG.E`` then 4 dependent ``FFMA``), so each thread has 16 B in
  flight. Bound: memory latency (Little's law: 8 warps per SM cannot cover the DRAM latency with 16 B each).
- Optimized: the same launch; each step issues four independent ``float4`` loads (SASS: 4 ``LDG.E.128``) into four
  accumulator chains, 64 B in flight per thread. Bound: HBM bandwidth.

The lever on an H100 is the number of independent loads in flight per thread, not the FMA latency (4 clocks,
hidden by 8 warps); with 8x more threads the baseline would approach the same bandwidth: TLP and ILP trade.
The scalar tail and a misaligned pointer fall back to 4-byte loads.

Shape ``(n,)``. Timing shape (124439808,): the squared global norm of GPT-2-small's 124.4 M fp32 gradients, the
first step of gradient-norm clipping (498 MB).

Napkin math on an H100 (fp32, ~0.6-0.8 us loaded DRAM latency):
- work: read 498 MB once, 2 flops per element.
- baseline: 132 SMs * 256 threads * 16 B = 541 KB in flight / ~0.7 us = ~0.8 TB/s: ~0.6 ms.
- optimized: 4x the bytes in flight, ~3.1 TB/s of latency cover, so HBM-bound at ~2.8 TB/s: ~0.18 ms.
- predicted speedup: ~0.6 ms / ~0.18 ms = ~3.3x (2-4x, set by the loaded latency).
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work
from pytest_aiperf.build import CudaLibrary

_lib = CudaLibrary(__file__, "instruction_level_parallelism.cu")


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor]:
    """Gradients (n,) at a typical scale of 1e-3."""
    return (normal(seeded(seed), shape, dtype, device, std=1e-3),)


def _sum_squares(launcher: Any, grads: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(1, dtype=grads.dtype, device=grads.device)
    launcher(total, grads, grads.numel())
    return total


def baseline_one_accumulator(grads: torch.Tensor) -> torch.Tensor:
    """One dependent FMA chain per thread fed by 4-byte loads (16 B in flight after the compiler's unroll)."""
    return _sum_squares(_lib.sum_squares_one_accumulator, grads)


def optimized_four_accumulators(grads: torch.Tensor) -> torch.Tensor:
    """Four independent chains per thread, each fed by its own 16-byte load (64 B in flight)."""
    return _sum_squares(_lib.sum_squares_four_accumulators, grads)


def reference(grads: torch.Tensor) -> torch.Tensor:
    """The sum of squares in float64, as a 1-element tensor."""
    return grads.double().square().sum().reshape(1)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read the gradients once (the 4-byte result is negligible); a multiply-add per element."""
    (n,) = shape
    return Work(bytes=float(itemsize(dtype) * n), flops=float(2 * n))
