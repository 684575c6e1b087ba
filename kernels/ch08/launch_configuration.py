"""Launch configuration: the SwiGLU activation launched with 32-thread blocks vs 256-thread blocks.

- Baseline: one element per thread in blocks of one warp (32 threads), a configuration that keeps indexing simple.
  An H100 SM holds at most 32 resident blocks, so one-warp blocks cap it at 32 of its 64 warps (50% occupancy),
  and the block scheduler launches and retires 1.4 M tiny blocks. Bound: memory latency (too few bytes in flight).
- Optimized: the same kernel in blocks of 256 threads: 8 blocks fill the SM's 64 warps. Bound: HBM bandwidth.

Shape ``(tokens, hidden)``. Timing shape (4096, 11008): ``silu(gate) * up`` in the MLP of a Llama-2-7B layer
(intermediate size 11008) over 4096 tokens, 45 M elements, fp32.

Napkin math on an H100 (fp32):
- work: read gate and up, write out: 3 * 180 MB = 541 MB; ~6 flops per element (exp as one).
- optimized: 541 MB at ~2.8 TB/s = ~0.19 ms.
- baseline: each warp has 2 loads of 128 B in flight; 32 warps per SM give 8 KB per SM, 1.1 MB in all: ~1.5 TB/s
  of latency cover at ~0.7 us, so ~0.35 ms, plus block launch overhead at one block per 32 elements.
- predicted speedup: ~0.35 ms / ~0.19 ms = ~1.8x (1.3-2x).
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work
from pytest_aiperf.build import CudaLibrary

_lib = CudaLibrary(__file__, "launch_configuration.cu")


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate and up projections (tokens, hidden), unit-normal like the outputs of the two MLP input GEMMs."""
    gen = seeded(seed)
    return normal(gen, shape, dtype, device), normal(gen, shape, dtype, device)


def _swiglu(launcher: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(gate)
    launcher(out, gate, up, gate.numel())
    return out


def baseline_warp_sized_blocks(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``<<<ceil(n / 32), 32>>>``: at most 32 one-warp blocks per SM, half its warp slots."""
    return _swiglu(_lib.swiglu_warp_blocks, gate, up)


def optimized_full_blocks(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``<<<ceil(n / 256), 256>>>``: 8 blocks of 8 warps fill every SM."""
    return _swiglu(_lib.swiglu_full_blocks, gate, up)


def reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` in float64."""
    gate = gate.double()
    return gate * torch.sigmoid(gate) * up.double()


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read gate and up once, write the product once; ~6 flops per element (negate, exp, add, divide, multiply)."""
    tokens, hidden = shape
    elements = tokens * hidden
    return Work(bytes=float(itemsize(dtype) * 3 * elements), flops=float(6 * elements))
