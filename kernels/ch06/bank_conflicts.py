"""Shared-memory bank conflicts: a tiled transpose with a 32-word tile row vs the same tile padded to 33 words.

- Baseline: the textbook coalesced transpose. Each 32 x 32 tile is read from HBM row by row into shared memory,
  then written out row by row, which reads the tile down a column: with 32 floats per tile row every address of
  the warp's column read falls in the same bank, a 32-way conflict (32 shared-memory wavefronts per warp read).
  Bound: shared-memory wavefronts, not HBM.
- Optimized: ``float tile[32][33]``: the padding word shifts each row by one bank, so a column read touches 32
  different banks (1 wavefront). Bound: HBM. Global accesses are identical in both arms.

Shape ``(rows, cols)``. Timing shape (8192, 8192): transposing an 8192 x 8192 fp32 weight, the size of a
Llama-2-70B attention projection (e.g. to store W^T for the backward pass), 268 MB each way.

Napkin math on an H100 (fp32, one SM moves 128 B of shared memory per clock, ~1.75 GHz under load):
- work: read 268 MB + write 268 MB = 537 MB; no flops.
- optimized: 537 MB at ~2.8 TB/s = ~190 us; the tile traffic is 2 wavefronts per 32 elements (~18 us per SM).
- baseline: the column reads cost one wavefront per element: 67.1 M / 132 SMs = 508 K clocks = ~290 us of
  shared-memory time per SM, which only partly overlaps the ~190 us of HBM traffic: ~300-350 us.
- predicted speedup: ~320 us / ~195 us = ~1.6x (1.4-1.9x).
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work
from pytest_aiperf.build import CudaLibrary

_lib = CudaLibrary(__file__, "bank_conflicts.cu")


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor]:
    """A unit-normal (rows, cols) fp32 matrix."""
    return (normal(seeded(seed), shape, dtype, device),)


def _transpose(launcher: Any, matrix: torch.Tensor) -> torch.Tensor:
    rows, cols = matrix.shape
    out = torch.empty((cols, rows), dtype=matrix.dtype, device=matrix.device)
    launcher(out, matrix, rows, cols)
    return out


def baseline_unpadded_tile(matrix: torch.Tensor) -> torch.Tensor:
    """Coalesced tiled transpose through ``float tile[32][32]``: 32-way bank conflicts on the column reads."""
    return _transpose(_lib.transpose_unpadded, matrix)


def optimized_padded_tile(matrix: torch.Tensor) -> torch.Tensor:
    """The same transpose through ``float tile[32][33]``: conflict-free column reads."""
    return _transpose(_lib.transpose_padded, matrix)


def reference(matrix: torch.Tensor) -> torch.Tensor:
    """The transpose in float64, materialized."""
    return matrix.double().t().contiguous()


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read the matrix once and write its transpose once."""
    rows, cols = shape
    return Work(bytes=float(itemsize(dtype) * 2 * rows * cols))
