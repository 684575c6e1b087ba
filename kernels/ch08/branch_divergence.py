"""Branch divergence: a stable softplus written with a sign branch vs one branch-free formula (bf16 activations).

- Baseline: ``x > 0 ? x + log1p(exp(-x)) : log1p(exp(x))``, the textbook overflow-safe softplus. Each side is a
  different ~40-instruction sequence (exp, then log1p with its own short slow path), and with both signs in a warp
  the warp executes both sides one after the other. Bound: instruction issue (~107 SASS instructions per element).
- Optimized: ``max(x, 0) + log1p(exp(-|x|))``, the same function with a single code path (~62 instructions per
  element). Bound: instruction issue, close to the HBM bound.

Instruction counts are from this file's SASS (sm_90a, nvcc 13.0): common prologue 20, positive side 39, other
side 42, epilogue 6; branch-free total 62 (67 including an early exit and a rarely taken log1p branch).

Shape ``(tokens, channels)``. Timing shape (16384, 5120): ``softplus(dt)`` in a Mamba-2.8B layer (d_inner 5120)
over 8 sequences of 2048 tokens, 84 M bf16 values; pre-activations have both signs in every warp.

Napkin math on an H100 (4 issue slots per SM per clock, ~1.75 GHz, bf16 in and out):
- work: 2 B in + 2 B out per element = 336 MB; ~20 flops per element (exp and log1p as ~8 each).
- HBM bound: 336 MB at ~2.8 TB/s = ~120 us.
- optimized: 84 M * 62 instructions / (132 SMs * 128 per clock) = 308 K clocks = ~176 us.
- baseline: 84 M * 107 instructions, ~304 us.
- predicted speedup: ~304 us / ~176 us = ~1.7x (1.4-1.8x).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work
from pytest_aiperf.build import CudaLibrary

_lib = CudaLibrary(__file__, "branch_divergence.cu")


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor]:
    """Pre-activations (tokens, channels) with std 3: both signs everywhere, and tails where exp saturates."""
    return (normal(seeded(seed), shape, dtype, device, std=3.0),)


def _softplus(launcher: Any, x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    launcher(out, x, x.numel())
    return out


def baseline_sign_branch(x: torch.Tensor) -> torch.Tensor:
    """Stable softplus with ``if (x > 0) ... else ...``: divergent warps run both sides."""
    return _softplus(_lib.softplus_with_branch, x)


def optimized_branch_free(x: torch.Tensor) -> torch.Tensor:
    """``max(x, 0) + log1p(exp(-|x|))``: one code path for every lane."""
    return _softplus(_lib.softplus_without_branch, x)


def reference(x: torch.Tensor) -> torch.Tensor:
    """Softplus in float64 (the kernels read and write bf16 only)."""
    return F.softplus(x.double())


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read x once and write softplus(x) once; ~20 flops per element."""
    tokens, channels = shape
    elements = tokens * channels
    return Work(bytes=float(itemsize(dtype) * 2 * elements), flops=float(20 * elements))
