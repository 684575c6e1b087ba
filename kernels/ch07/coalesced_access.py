"""Coalesced access: the per-row mean of squares read one thread per row vs one warp per row.

- Baseline: ``mean_square_thread_per_row``, thread r loops over row r. At each step the 32 lanes of a warp read
  32 addresses a whole row (16 KB) apart: 32 separate 32-byte sectors and 32 L1 wavefronts per load instruction
  for 128 useful bytes. Only ``rows`` threads exist (32768: ~8 warps per SM). Bound by L1 wavefront throughput
  and latency, far below HBM.
- Optimized: ``mean_square_warp_per_row``, the 32 lanes of a warp read consecutive float4s of one row (512
  contiguous bytes per load instruction, four in flight per lane), then reduce with warp shuffles. HBM-bound.

Shape ``(rows, cols)``. Timing shape (32768, 4096): the RMSNorm statistic (mean of squares over the 4096-wide
hidden state of a Llama-2-7B layer) for 32768 tokens, fp32.

Napkin math on an H100 SXM (132 SMs, ~3.0 TB/s):
- work: 512 MB read + 128 KB written; 2 flops per element (268 MFLOP).
- optimized: 512 MB at ~2.9-3.1 TB/s (read-only streams slightly faster than a copy) = ~0.17-0.18 ms.
- baseline: 32768 rows / 32 = 1024 warps (~8 per SM), 4096 load instructions each, 32 wavefronts per
  instruction: ~1M L1 cycles per SM = ~0.6 ms at 1.75 GHz even if every sector after the first hits L1 (each
  32-byte sector serves 8 consecutive steps); more where L1 misses and latency show through so few warps.
- predicted speedup: ~3-8x.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work
from pytest_aiperf.build import CudaLibrary

_lib = CudaLibrary(__file__, "coalesced_access.cu")


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor]:
    """Hidden states (rows, cols), unit-normal fp32."""
    return (normal(seeded(seed), shape, dtype, device),)


def baseline_thread_per_row(x: torch.Tensor) -> torch.Tensor:
    """One thread per row: a warp's loads are strided by a whole row."""
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    _lib.mean_square_strided(out, x, x.shape[0], x.shape[1])
    return out


def optimized_warp_per_row(x: torch.Tensor) -> torch.Tensor:
    """One warp per row: a warp's loads cover consecutive 16-byte vectors."""
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    _lib.mean_square_coalesced(out, x, x.shape[0], x.shape[1])
    return out


def reference(x: torch.Tensor) -> torch.Tensor:
    """The mean of squares of every row in float64 (the kernels take fp32 only)."""
    return x.square().mean(dim=-1)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read the matrix once, write one float per row; a multiply and an add per element."""
    rows, cols = shape
    return Work(bytes=float(itemsize(dtype) * (rows * cols + rows)), flops=float(2 * rows * cols))
