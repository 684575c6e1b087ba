"""Loop unrolling: an FIR filter whose tap loop has a runtime trip count vs a compile-time count under ``#pragma unroll``.

- Baseline: each thread computes outputs of one channel in a grid-stride loop; the tap loop runs to a runtime
  ``taps``, so the compiler unrolls it only 4x and loads each tap weight from memory for every output (two L1 loads
  per multiply-add, plus loop bookkeeping). Bound: L1 load throughput.
- Optimized: the tap count is a template parameter and both tap loops are fully unrolled, so the 31 weights are
  loaded once per thread into registers (a register array needs compile-time indices) and each multiply-add needs
  one L1 load with an immediate offset. Bound: L1 load throughput, at half the loads.

Both arms sum the taps in the same order with ``fmaf``: they return bitwise identical outputs. The optimized
launcher supports 15 and 31 taps (the template instances).

Shape ``(channels, samples, taps)``. Timing shape (16, 1048576, 31): a 31-tap low-pass FIR (valid
cross-correlation, as ``conv1d``) over 16 audio channels of 2^20 samples (~22 s at 48 kHz), fp32.

Napkin math on an H100 (an SM's L1 serves ~1 warp-wide load per clock, ~1.75 GHz):
- work: read 67 MB of samples and write 67 MB of outputs = 134 MB (~48 us at ~2.8 TB/s); 2 * 31 flops per output.
- baseline: per warp of 32 outputs, 31 sample loads (often 2 cache lines each when unaligned) + 31 weight loads:
  ~93 L1 wavefronts; 16.8 M / 32 * 93 / 132 SMs = 370 K clocks = ~210 us.
- optimized: ~62 wavefronts per warp of outputs: ~140 us; the 62 issued instructions per output fit well below.
- predicted speedup: ~210 us / ~140 us = ~1.5x (1.3-2x).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work
from pytest_aiperf.build import CudaLibrary

_lib = CudaLibrary(__file__, "loop_unrolling.cu")
UNROLLED_TAPS = (15, 31)


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Signals (channels, samples), unit-normal, and a windowed-sinc low-pass filter of ``taps`` weights."""
    channels, samples, taps = shape
    signal = normal(seeded(seed), (channels, samples), dtype, device)
    n = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    weights = torch.sinc(0.25 * n) * torch.hann_window(taps, periodic=False, dtype=torch.float64)
    return signal, (weights / weights.sum()).to(dtype=signal.dtype, device=device)


def _fir(launcher: Any, signal: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    channels, samples = signal.shape
    taps = weights.numel()
    out = torch.empty((channels, samples - taps + 1), dtype=signal.dtype, device=signal.device)
    launcher(out, signal, weights, channels, samples, taps)
    return out


def baseline_rolled_taps(signal: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``for (k = 0; k < taps; ++k) acc = fmaf(w[k], x[t + k], acc)`` with a runtime tap count."""
    return _fir(_lib.fir_rolled, signal, weights)


def optimized_unrolled_taps(signal: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The same loop with a compile-time tap count, fully unrolled: weights in registers, one load per tap."""
    if weights.numel() not in UNROLLED_TAPS:
        raise ValueError(f"fir_unrolled is instantiated for {UNROLLED_TAPS} taps, not {weights.numel()}")
    return _fir(_lib.fir_unrolled, signal, weights)


def reference(signal: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The valid cross-correlation in float64 via ``conv1d`` (which does not flip the kernel)."""
    return F.conv1d(signal.double()[:, None, :], weights.double()[None, None, :])[:, 0, :]


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read every sample and weight once, write every output once; one multiply-add per tap per output."""
    channels, samples, taps = shape
    outputs = channels * (samples - taps + 1)
    return Work(bytes=float(itemsize(dtype) * (channels * samples + taps + outputs)), flops=float(2 * taps * outputs))
