"""The 9-tap row filter shared by ``cp_async_double_buffer`` and ``tma_bulk_copy``: inputs, reference, work model.

``y[r, o] = sum_t w[t] * x[r, o - 4 + t]``, zero-padded at both ends of every row (a "same"-size FIR filter,
``row_filter.cuh``). Shape ``(rows, cols)``. Timing shape (64, 2880000): a batch of 64 one-minute audio clips at
48 kHz (184 M fp32 samples, 737 MB), each filtered along time.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work

TAPS = 9


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Signals (rows, cols), unit-normal, and the filter's taps, normal with std 1/3 (unit gain on average)."""
    gen = seeded(seed)
    return normal(gen, shape, dtype, device), normal(gen, (TAPS,), dtype, device, std=1 / 3)


def filtered(kernel: Any, x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Run one of the launchers: a fresh output, the tensors as the kernels require them."""
    if taps.numel() != TAPS or x.dim() != 2:
        raise ValueError(f"the row filter takes (rows, cols) signals and {TAPS} taps; got {tuple(x.shape)}, "
                         f"{taps.numel()} taps")
    if x.data_ptr() % 16:
        raise ValueError("the staged kernels copy 16-byte vectors: the signal must start 16-byte aligned")
    y = torch.empty_like(x)
    kernel(y, x, taps, x.shape[0], x.shape[1])
    return y


def reference(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """The filter as nine shifted, weighted slices of the zero-padded signal, in float64."""
    radius = TAPS // 2
    padded = F.pad(x, (radius, radius))
    cols = x.shape[1]
    out = torch.zeros_like(x)
    for t in range(TAPS):
        out += taps[t] * padded[:, t:t + cols]
    return out


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read every sample once, write every output once; 9 multiply-adds per output."""
    rows, cols = shape
    return Work(bytes=float(itemsize(dtype) * (2 * rows * cols + TAPS)), flops=float(2 * TAPS * rows * cols))
