"""Roofline sweep: a degree-k polynomial per element as k eager Horner steps vs one fused Triton pass.

``y = c[0] + x (c[1] + x (c[2] + ... + x c[k]))`` for every element of x: the shape of the polynomial fits that
replace transcendental activations and of learned per-element functions (KAN-style splines in polynomial form).
The timing shapes sweep k, so the fused arm's rows walk the roofline from memory-bound to compute-bound.

- Baseline: Horner in eager PyTorch, one ``torch.addcmul`` per degree (``y = c[i] + y * x``): k kernels, each
  reading x and the running y and writing a new y. Always HBM-bound: 1 FMA per 12 bytes moved, whatever k is.
- Optimized: ``_horner``, one Triton pass that loads x once, runs the k FMAs in registers (the coefficients are
  uniform loads that stay in L1) and writes y once: 2k flops per 8 bytes, memory-bound for small k and FMA-bound
  (CUDA cores, fp32) for large k.

Shape ``(tokens, hidden, degree)``, fp32. Timing shapes (4096, 4096, k) for k = 2, 8, 32, 128, 512: a 4096 x 4096
activation (16.8 M elements, 67 MB). k = 1 would be a tie (one addcmul is already one fused pass), so the sweep
starts at 2.

Napkin math on an H100 SXM (~3.0 TB/s; fp32 FMA peak ~67 TFLOP/s, ~59 at a loaded 1.75 GHz):
- work: 134 MB (read x, write y) and 2k x 16.8 M flops: arithmetic intensity k / 4 flop/B; the ridge point
  (~60 TFLOP/s / 3.0 TB/s = ~20 flop/B) sits at k ~ 80.
- optimized: max(134 MB / 3.0 TB/s = 45 us, 2k x 16.8 M flops at ~45-50 TFLOP/s (16 FMAs per ~4-5 instructions
  of coefficient load and loop control, ~75-80% of the FMA issue rate)): k = 2, 8, 32 -> ~45 us (memory-bound),
  k = 128 -> ~85-95 us, k = 512 -> ~340-380 us (compute-bound).
- baseline: the first step reads x and writes y (134 MB, 45 us), each further step moves 201 MB (~67 us; x and y
  together overflow the 50 MB L2): k = 2 -> ~0.11 ms, 8 -> ~0.5 ms, 32 -> ~2.1 ms, 128 -> ~8.5 ms, 512 -> ~34 ms.
- predicted speedups: ~2.5x, ~11x, ~45x, ~90-100x, ~90-100x: the gap grows with k while the fused arm is
  memory-bound, then flattens once it is compute-bound (both arms then grow linearly in k).

Measured (H100 VM, 2026-11-21, three processes at commits c0a8b42, 401dac0, 6242554), k = 2, 8, 32, 128, 512:
131 us, 583-584 us, 2.4 ms, 9.67 ms, 38.6-38.7 ms vs 43.3-43.4, 43.0-43.1, 47.7, 135, 502-503 us: 3.02-3.03x,
13.54-13.56x, 50.32-50.40x, 71.41-71.87x, 76.78-76.95x. The memory-bound rows beat ~2.5x, ~11x and ~45x: the fused
arm held the copy rate (93-104% of the measured ceiling) and the eager rows ran ~14-19% over their estimates
(derived: 131 / 110 us to 38.7 / 34 ms). The compute-bound rows fell short of ~90-100x: 31.7-31.9 TFLOP/s at
k = 128, 34.1-34.2 at k = 512, 61-68% of the measured fp32 ceiling (cuBLAS, 50.5-52.1 TFLOP/s), not the ~45-50
assumed; likely the loop issues fewer FMAs per clock than the assumed ~75-80% of the issue rate (not profiled).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from kernels import itemsize, seeded, torch_dtype
from pytest_aiperf import Work

BLOCK = 2048  # 16 elements per thread at 4 warps: 16 FMAs per coefficient load and loop step


@triton.jit
def _horner(y_ptr, x_ptr, c_ptr, n, degree, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0)
    y = tl.zeros([BLOCK], dtype=tl.float32) + tl.load(c_ptr + degree)
    for j in range(degree):
        y = y * x + tl.load(c_ptr + (degree - 1 - j))
    tl.store(y_ptr + offsets, y, mask=mask)


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """x uniform in (-1, 1) (a normalized activation) and k + 1 coefficients ~N(0, 1/(k+1)), so y stays O(1)."""
    tokens, hidden, degree = shape
    gen = seeded(seed)
    x = torch.rand((tokens, hidden), generator=gen, dtype=torch.float32) * 2.0 - 1.0
    coeffs = torch.randn(degree + 1, generator=gen, dtype=torch.float32) * (degree + 1) ** -0.5
    return x.to(dtype=torch_dtype(dtype), device=device), coeffs.to(dtype=torch_dtype(dtype), device=device)


def baseline_eager_horner(x: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Horner's rule as k eager ops: each ``addcmul`` reads x and y and writes a new full-size y."""
    degree = coeffs.numel() - 1
    y = torch.addcmul(coeffs[degree - 1], x, coeffs[degree])
    for i in range(degree - 2, -1, -1):
        y = torch.addcmul(coeffs[i], y, x)
    return y


def optimized_fused_horner(x: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """One pass: read x once, k FMAs per element in registers, write y once."""
    y = torch.empty_like(x)
    n = x.numel()
    _horner[(triton.cdiv(n, BLOCK),)](y, x, coeffs, n, coeffs.numel() - 1, BLOCK=BLOCK, num_warps=4)
    return y


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read x once and write y once (the coefficients are noise); one FMA (2 flops) per degree per element."""
    tokens, hidden, degree = shape
    elements = tokens * hidden
    return Work(bytes=float(itemsize(dtype) * (2 * elements + degree + 1)), flops=float(2 * degree * elements))
