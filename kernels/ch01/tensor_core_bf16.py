"""Tensor cores: an fp32 GEMM on the CUDA cores vs the same GEMM in bf16 on the tensor cores.

- Baseline: ``a @ b`` in fp32 with torch's default matmul precision (TF32 off: ``allow_tf32`` is False unless
  someone changes it globally; this module never does); compute-bound on the fp32 FMA units.
- Optimized: cast both fp32 inputs to bf16, multiply on the tensor cores (fp32 accumulation), cast the
  product back to fp32 so the arm is a drop-in replacement; compute-bound on the tensor cores, with the casts
  adding HBM-bound passes. In production the weights would already be stored in bf16 and the activations
  would arrive in bf16; here all three casts are paid inside the optimized time.

Shape ``(m, k, n)``. Timing shape (4096, 4096, 4096): the attention output projection (4096 -> 4096) of a
Llama-2-7B layer over a batch of 4096 tokens.

Napkin math on an H100:
- work: 2 * 4096^3 = 137 GFLOP; bytes 4 B * 3 * 4096^2 = 201 MB (fp32 in and out, each once).
- baseline: 137 GFLOP at ~50-60 TFLOP/s fp32 = ~2.3-2.7 ms (1 launch).
- optimized: 137 GFLOP at ~800 TFLOP/s bf16 = ~0.17 ms; casts read 134 MB fp32 + write 67 MB bf16 in, then
  read 34 MB bf16 + write 67 MB fp32 out = ~300 MB at ~3.0 TB/s = ~0.1 ms; 4 launches. Total ~0.27 ms.
- predicted speedup: ~2.5 ms / ~0.27 ms = ~9x (the dtype change alone; GPUs without bf16 tensor cores lose).

Precision: bf16 keeps 8 significand bits (unit roundoff 2^-8 = 0.39%). Rounding both inputs and the output
gives errors of ~0.4% of the output's RMS with fp32 accumulation; the case declares that in its Tolerance.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations a (m, k) and weights b (k, n), unit-normal, stored in the case dtype (fp32)."""
    m, k, n = shape
    gen = seeded(seed)
    return normal(gen, (m, k), dtype, device), normal(gen, (k, n), dtype, device)


def baseline_fp32_gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Plain fp32 matmul: FFMA on the CUDA cores (TF32 off by torch's default)."""
    return torch.matmul(a, b)


def optimized_bf16_tensor_cores(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cast to bf16, matmul on the tensor cores (HMMA with fp32 accumulation), cast back to the input dtype."""
    return torch.matmul(a.to(torch.bfloat16), b.to(torch.bfloat16)).to(a.dtype)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read a and b once and write the product once, in the case dtype; 2 flops per multiply-add, run in bf16."""
    m, k, n = shape
    return Work(bytes=float(itemsize(dtype) * (m * k + k * n + m * n)), flops=float(2 * m * k * n), flops_at="bf16")
