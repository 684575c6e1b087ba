"""Elementwise fusion: GELU written as a chain of tensor expressions vs the library's single fused kernel.

- Baseline: the tanh-approximation GELU exactly as GPT-2 and BERT reference code wrote it
  (``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3))))``): eager mode runs 8 elementwise kernels,
  each reading and writing a full-size temporary; HBM-bound on the temporaries.
- Optimized: ``F.gelu(x, approximate="tanh")``, the same formula in one kernel that reads x once and writes
  the result once; HBM-bound at the minimum traffic.

Shape ``(tokens, width)``. Timing shape (8192, 3072): the MLP activation of a GPT-2-small layer (width
4 * 768) over a training batch of 8 sequences of 1024 tokens; 25.2 M elements, 101 MB in fp32.

Napkin math on an H100 (fp32):
- work: 2 * 101 MB = 201 MB (read x, write y); ~9 flops per element = 0.23 GFLOP (negligible).
- baseline: the 8 kernels read 10 and write 8 full tensors: 18 * 101 MB = 1.8 GB at ~3.0 TB/s = ~0.6 ms.
- optimized: 201 MB at ~3.0 TB/s = ~67 us.
- predicted speedup: 18 / 2 passes = ~9x (~8x with the elementwise kernels' bandwidth efficiency).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor]:
    """Pre-activations (tokens, width) with std 2, so both the linear and the saturated parts of tanh are hit."""
    tokens, width = shape
    return (normal(seeded(seed), (tokens, width), dtype, device, std=2.0),)


def baseline_unfused_gelu(x: torch.Tensor) -> torch.Tensor:
    """The GPT-2 formula in eager PyTorch: 8 separate elementwise kernels and 7 full-size temporaries."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def optimized_fused_gelu(x: torch.Tensor) -> torch.Tensor:
    """The same tanh approximation as one fused kernel: one read of x, one write of the result."""
    return F.gelu(x, approximate="tanh")


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read x once and write y once; 9 flops per element (cube as 2 multiplies, 4 more multiplies, 2 adds, tanh as 1)."""
    tokens, width = shape
    elements = tokens * width
    return Work(bytes=float(itemsize(dtype) * 2 * elements), flops=float(9 * elements))
