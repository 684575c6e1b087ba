"""Vectorized loads: a residual add with 4-byte loads vs 16-byte (float4) loads, same loop, same grid.

- Baseline: ``add_scalar``, a grid-stride loop over floats on a grid that fills every SM once (SMs x resident
  blocks). Per trip a thread has two 4-byte loads in flight: 2048 threads x 8 B = 16 KB per SM, at the edge of
  what HBM needs (Little's law: ~3.0 TB/s x ~0.7 us / 132 SMs = ~16 KB per SM), and 3 memory instructions per
  element. HBM-latency-bound, close to HBM-bandwidth-bound.
- Optimized: ``add_vec4``, the same loop and grid over float4 (the < 4 trailing floats one by one): 32 bytes of
  loads in flight per thread (64 KB per SM) and a quarter of the memory instructions. HBM-bound.

Shape ``(tokens, hidden)``. Timing shape (32768, 4096): the residual add of a Llama-2-7B decoder layer over
32768 tokens (16 sequences of 2048), fp32.

Napkin math on an H100 SXM (~3.0 TB/s):
- work: 2 x 512 MB read + 512 MB written = 1.61 GB; one add per element (134 MFLOP).
- optimized: 1.61 GB at ~2.8-3.0 TB/s = ~0.54-0.58 ms.
- baseline: ~75-90% of that rate = ~0.6-0.7 ms.
- predicted speedup: ~1.1-1.25x. Wide loads matter most when few bytes are in flight per thread; at full
  occupancy on a streaming kernel the gain is modest, and the case says so rather than shrinking the grid.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work
from pytest_aiperf.build import CudaLibrary

_lib = CudaLibrary(__file__, "vectorized_loads.cu")


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual stream and the block's output (tokens, hidden), unit-normal fp32."""
    gen = seeded(seed)
    return normal(gen, shape, dtype, device), normal(gen, shape, dtype, device)


def baseline_scalar_loads(residual: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """Grid-stride loop over floats: 4-byte loads and stores."""
    out = torch.empty_like(residual)
    _lib.add_residual_scalar(out, residual, update, residual.numel())
    return out


def optimized_vector_loads(residual: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """Grid-stride loop over float4: 16-byte loads and stores."""
    out = torch.empty_like(residual)
    _lib.add_residual_vec4(out, residual, update, residual.numel())
    return out


def reference(residual: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """The sum in float64 (the kernels take fp32 only)."""
    return residual + update


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read both tensors once, write the sum once; one add per element."""
    n = torch.Size(shape).numel()
    return Work(bytes=float(3 * itemsize(dtype) * n), flops=float(n))
