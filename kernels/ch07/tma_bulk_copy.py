"""TMA bulk copy: a tiled row filter staged by every thread vs streamed in by the Hopper bulk-copy engine.

Both arms filter tiles of 2048 outputs (plus a 4-sample halo each side) staged in shared memory
(``row_filter.cuh``, ``tma_bulk_copy.cu``).

- Baseline: ``filter_sync_staging`` (the same kernel as ``cp_async_double_buffer``'s baseline): one tile per
  block, every thread loads its ~9 inputs through registers into shared memory, ``__syncthreads()``, filters.
  HBM-latency-bound in part.
- Optimized: ``filter_tma``, a persistent grid; one thread per block issues one ``cp.async.bulk`` per tile
  (the tile's 16-byte-aligned middle, ~8 KB; the < 4 unaligned floats at each end are copied by hand) into a
  4-stage ring, each stage completing on its own mbarrier with the byte count. Up to 4 tiles (32 KB) per
  block in flight, no registers or address math spent on the copies. HBM-bound.

Timing shape (64, 2880000): see ``row_filter``.

Napkin math on an H100 SXM (~3.0 TB/s, 132 SMs, 6 blocks of 33 KB shared memory per SM):
- work: 737 MB read + 737 MB written = 1.47 GB; 18 flops per output (3.3 GFLOP, negligible).
- optimized: 1.47 GB at ~2.6-2.8 TB/s = ~0.53-0.57 ms (one launch); ~190 KB per SM in flight, far above the
  ~16 KB HBM needs, so the bound is HBM (and the filter's shared-memory reads, ~0.2 ms, overlap it).
- baseline: ~70-85% of that rate = ~0.6-0.75 ms.
- predicted speedup: ~1.1-1.3x; against ``cp_async_double_buffer``'s optimized arm it should tie (both HBM-bound):
  TMA's gain here is fewer instructions and registers, which a memory-bound filter does not need.

Measured: a loss on the H100, a tie on an H200; the prediction is wrong about the baseline. H100 VMs (2026-11-21,
three processes at commits 35aae07, 494cf6d and 8759613, two cards): 508-531 us -> 532-557 us, 0.95x. The
optimized arm is where predicted (~2.76 TB/s; 2% faster than ``cp_async_double_buffer``'s, close to the predicted
tie), but the baseline streams at ~2.9 TB/s, ~97% of the ~3.0 TB/s copy ceiling, not 70-85% of it, so the bulk
copies have no HBM latency left to hide. An H200 measured 1.01-1.03x (a gate run: 426 -> 420 us). The H100 loss is
likely (not profiled) what the ring adds per tile: an mbarrier wait, two block-wide barriers, and a stage refilled
only after the whole block has filtered it.
"""

from __future__ import annotations

import torch

from kernels.ch07.row_filter import filtered, inputs, reference, work
from pytest_aiperf.build import CudaLibrary

__all__ = ["baseline_sync_staging", "optimized_tma_bulk_copy", "inputs", "reference", "work"]

_lib = CudaLibrary(__file__, "tma_bulk_copy.cu")


def baseline_sync_staging(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """One tile per block: load to registers, store to shared memory, synchronize, filter."""
    return filtered(_lib.row_filter_sync, x, taps)


def optimized_tma_bulk_copy(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Persistent blocks: one bulk copy per tile into a 4-stage mbarrier ring, filtered as each lands."""
    return filtered(_lib.row_filter_tma, x, taps)
