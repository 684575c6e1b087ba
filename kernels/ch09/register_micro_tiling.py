"""Register micro-tiling: a shared-memory tiled fp32 matmul with one output per thread vs 4 x 4 outputs per thread.

- Baseline: the textbook shared-memory tiled matmul: a 1024-thread block stages 32 x 32 slabs of A and B in shared
  memory and each thread computes one output, reading ``a_tile[ty][kk]`` (a broadcast) and ``b_tile[kk][tx]`` for
  every multiply-add: 2 shared-memory loads per FMA. Bound: shared-memory bandwidth, at most 1/8 of the FMA peak.
- Optimized: the same 32 x 32 block tile, the same 32-deep slabs staged by the same coalesced loads, but 64 threads
  that each own a 4 x 4 block of outputs: per k step a thread loads 4 A and 4 B values into registers and issues
  16 FMAs from them (an outer product), 8 shared loads per 16 FMAs. Bound: shared-memory wavefronts and issue, at
  most 1/2 of the FMA peak.

Only the register blocking differs (ch08's ``tiled_matmul``, whose ``inputs``, ``reference`` and ``work`` this
pair shares, changes global-memory operands into shared tiles; here the shared-memory staging is held fixed). Both
sum k in ascending order with ``fmaf``: identical outputs. Both stay below cuBLAS (~50 TFLOP/s fp32, with
128 x 128 tiles, 8 x 8 micro-tiles and asynchronous copies).

Shape ``(m, k, n)``, fp32. Timing shape (4096, 4096, 4096): a 4096 x 4096 projection (a Llama-3-8B attention
projection) over 4096 tokens.

Napkin math on an H100 SXM (fp32 FMA peak ~67 TFLOP/s: 132 SMs x 128 FMA/clock x 2 x 1.98 GHz; ~59 at a loaded
~1.75 GHz):
- work: 2 x 4096^3 = 137 GFLOP; 3 x 67 MB = 201 MB (each matrix once).
- baseline: every warp-wide FMA needs 2 shared wavefronts and an SM serves 1 per clock: <= 0.5 of the 4 warp-FMAs
  per clock = 1/8 of peak = ~7-8 TFLOP/s; slab loads and barriers of 1024-thread blocks (2 per SM, 32 registers)
  bring it to ~6 TFLOP/s: ~20-23 ms.
- optimized: 8 wavefronts per 16 warp-FMAs: <= 1/2 of peak (~30 TFLOP/s), and 24 issued instructions per 16 FMAs;
  16 blocks of 2 warps per SM (64 registers). Each block reads 8 KB of slabs per 32 K FMAs, 0.25 B per FMA: ~3 TB/s
  from L2 at 25 TFLOP/s, within L2's bandwidth. ~20-25 TFLOP/s: ~5.5-7 ms.
- predicted speedup: ~3-4x.

Measured (H100 VM, 2026-11-21, three processes at commits c0a8b42, 401dac0, 6242554): 23.3-23.5 ms vs 7.03-7.08 ms,
3.31-3.32x, as predicted; the optimized arm ran at 19.4-19.5 TFLOP/s (38% of the measured cuBLAS fp32 ceiling), just
under its ~20-25 TFLOP/s estimate, and the baseline at ~5.8-5.9 TFLOP/s (derived: 137 GFLOP / 23.3-23.5 ms).
"""

from __future__ import annotations

import torch

from kernels.ch08.tiled_matmul import inputs, reference, work  # noqa: F401 (the same operands, answer and work)
from pytest_aiperf.build import CudaLibrary

_lib = CudaLibrary(__file__, "register_micro_tiling.cu")


def _matmul(launcher: object, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)
    launcher(c, a, b, a.shape[0], a.shape[1], b.shape[1])
    return c


def baseline_shared_tiles_one_output(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """32 x 32 shared-memory slabs, 1024 threads, one output each: 2 shared loads per multiply-add."""
    return _matmul(_lib.matmul_shared_one_output, a, b)


def optimized_register_micro_tiles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same 32 x 32 slabs, 64 threads, a 4 x 4 register micro-tile each: 8 shared loads per 16 multiply-adds."""
    return _matmul(_lib.matmul_register_tiled, a, b)
