"""Fused epilogue: a linear layer then GELU as two kernels vs GELU applied in the GEMM's epilogue (cuBLASLt).

Both arms use cuBLASLt for the GEMM, so the mainloop is the library's in both; only where GELU runs differs.

- Baseline: ``F.gelu(F.linear(x, w, b), approximate="tanh")``, what ``nn.Linear`` + ``nn.GELU`` run: cuBLASLt
  GEMM with the bias added in its epilogue (bf16 out), then an elementwise GELU kernel that reads that output
  back from HBM and writes the activation. Tensor-core-bound GEMM plus an HBM-bound pass.
- Optimized: ``torch._addmm_activation(b, x, w.t(), use_gelu=True)``: cuBLASLt's ``GELU_BIAS`` epilogue
  applies bias and GELU (tanh form) to the fp32 accumulators in registers before the single bf16 store. One
  kernel; the pass over the output and its launch are gone.

Shape ``(tokens, hidden, mlp)``. Timing shapes: (8192, 1600, 6400), the GPT-2 XL MLP up projection, and
(8192, 4096, 16384), GPT-J-6B's; both models use the tanh GELU ("gelu_new"); 8192 tokens = 8 sequences of 1024.

Napkin math on an H100 SXM (what the epilogue saves: one read and one write of the (tokens, mlp) bf16 output,
4 * tokens * mlp bytes, and one launch):
- GPT-2 XL: GEMM 2 * 8192 * 1600 * 6400 = 168 GFLOP at ~550-650 TFLOP/s (k = 1600 is short) = ~0.26-0.31 ms;
  the output is 105 MB, so the GELU pass moves 210 MB = ~75 us plus a ~2-4 us launch gap. Predicted ~1.25x.
- GPT-J: GEMM 1.1 TFLOP at ~700-760 TFLOP/s = ~1.45-1.57 ms; the GELU pass moves 537 MB = ~0.19 ms. ~1.12x.
- The saving is bytes against flops: 4 * tokens * mlp bytes vs 2 * tokens * mlp * hidden flops, so the win
  shrinks as 1/hidden. A tie would mean cuBLASLt chose a slower mainloop for the GELU epilogue.

Precision: the same bf16 GEMM; the optimized arm applies GELU to the fp32 accumulator instead of the bf16-rounded
output, so it is, if anything, closer to the float64 reference. On the CPU (correctness only), torch's
``_addmm_activation`` applies the exact erf GELU, which differs from the tanh form by < 5e-4 absolute, far below
bf16's tolerance.

Measured (H100 VM, 2026-11-21, three processes at commits c0a8b42, 401dac0, 6242554): GPT-2 XL 314-320 us vs
260-266 us, 1.20-1.21x; GPT-J 1.62-1.71 ms vs 1.50-1.59 ms, 1.07-1.08x: slightly below the predicted ~1.25x and
~1.12x. The arms differ by ~53-54 us and ~0.12 ms (derived), against the ~77-79 us and ~0.19 ms estimated for the
GELU pass; likely the GELU_BIAS epilogue makes the GEMM give back part of the saving (the two kernels were not timed
separately).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """Activations x (tokens, hidden) unit-normal, the weight w (mlp, hidden) with std hidden^-1/2 (so the
    pre-activations are ~unit-normal and GELU's curved part is exercised), and the bias b (mlp,) with std 0.1."""
    tokens, hidden, mlp = shape
    gen = seeded(seed)
    x = normal(gen, (tokens, hidden), dtype, device)
    w = normal(gen, (mlp, hidden), dtype, device, std=hidden**-0.5)
    b = normal(gen, (mlp,), dtype, device, std=0.1)
    return x, w, b


def baseline_linear_then_gelu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GEMM + bias (cuBLASLt epilogue), then a separate GELU kernel over the stored output."""
    return F.gelu(F.linear(x, w, b), approximate="tanh")


def optimized_gelu_in_epilogue(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GEMM with bias and GELU in cuBLASLt's epilogue: the output is written once, already activated."""
    return torch._addmm_activation(b, x, w.t(), use_gelu=True)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read x, w and b once, write the activation once; 2 flops per multiply-add (bias and GELU negligible)."""
    tokens, hidden, mlp = shape
    return Work(bytes=float(itemsize(dtype) * (tokens * hidden + mlp * hidden + mlp + tokens * mlp)),
                flops=float(2 * tokens * hidden * mlp))
