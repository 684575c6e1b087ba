"""Warp-shuffle reduction: the per-row sum of squares combined by a shared-memory tree vs by warp shuffles.

- Baseline: one 256-thread block per row; each thread accumulates cols/256 squares from coalesced loads, then the
  classic sequential-addressing tree: 256 partials in shared memory, ``if (tid < s) smem[tid] += smem[tid + s]``
  for s = 128 ... 1, a ``__syncthreads()`` after each of the 8 steps. Bound: HBM bandwidth, with the per-block
  reduction tail lengthening each block's life and so cutting the bytes each SM keeps in flight.
- Optimized: the same grid and loads; each warp sums its 32 partials with ``__shfl_down_sync`` (5 register
  exchanges, no shared memory), one smem slot per warp, one barrier, then warp 0 sums the 8 slots with 3 shuffles.
  Bound: HBM bandwidth.

Shape ``(rows, cols)``, fp32; output ``(rows,)`` fp32. Timing shape (65536, 1024): the per-token sum of squares of
RMSNorm/LayerNorm statistics over 65536 tokens of a 1024-wide hidden state (268 MB = 256 MiB).

Napkin math on an H100 (fp32, ~1.75 GHz under load, both kernels 32 registers: 8 blocks of 256 per SM):
- work: read 268 MB, write 256 KB; 2 flops per element. Memory time at ~3.0 TB/s: ~90 us.
- each block loads only 4 KB (4 loads per thread, one loaded DRAM latency of ~1-1.3 us), so the tail counts:
  tree ~8 x (2 LDS + STS + BAR ~ 70 clk) = ~550 clk = ~0.3 us; shuffles ~5 x 30 + STS/BAR/LDS + 3 x 30 = ~300 clk
  = ~0.17 us. 65536 blocks / (132 SMs x 8) = 62 waves of block lifetimes: ~62 x (1.3 + 0.35) = ~100-110 us for
  the tree, ~62 x (1.3 + 0.2) = ~93 us for the shuffles, which then sits at the HBM floor.
- predicted speedup: ~105 us / ~93 us = ~1.1-1.2x: modest, because the tail is only a fifth of a block's life and
  the other 7 resident blocks keep loading while one reduces. A tie is possible if the loaded latency is shorter
  (both kernels then reach HBM bandwidth); the shuffle's win grows for narrower rows (less load per tail).
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work
from pytest_aiperf.build import CudaLibrary

_lib = CudaLibrary(__file__, "warp_shuffle_reduction.cu")


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor]:
    """A unit-normal (rows, cols) fp32 hidden state."""
    return (normal(seeded(seed), shape, dtype, device),)


def _row_sum_squares(launcher: Any, hidden: torch.Tensor) -> torch.Tensor:
    rows, cols = hidden.shape
    out = torch.empty(rows, dtype=hidden.dtype, device=hidden.device)
    launcher(out, hidden, rows, cols)
    return out


def baseline_shared_memory_tree(hidden: torch.Tensor) -> torch.Tensor:
    """One block per row, block partials combined by a shared-memory tree: 8 barrier steps."""
    return _row_sum_squares(_lib.row_sumsq_tree, hidden)


def optimized_warp_shuffles(hidden: torch.Tensor) -> torch.Tensor:
    """The same loads, block partials combined by warp shuffles and one smem slot per warp: 1 barrier."""
    return _row_sum_squares(_lib.row_sumsq_shuffle, hidden)


def reference(hidden: torch.Tensor) -> torch.Tensor:
    """The per-row sum of squares in float64."""
    return hidden.double().square().sum(dim=1)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read the matrix once and write one value per row; a multiply-add per element."""
    rows, cols = shape
    return Work(bytes=float(itemsize(dtype) * (rows * cols + rows)), flops=float(2 * rows * cols))
