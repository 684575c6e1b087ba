"""TF32 tensor cores: an fp32 GEMM on the CUDA cores vs the same fp32 GEMM on the tensor cores in TF32 mode.

- Baseline: ``torch.matmul`` with cuBLAS's fp32 matmul precision set to ``"ieee"`` (true fp32 FFMA on the CUDA
  cores); compute-bound on the fp32 pipes.
- Optimized: the same call with the precision set to ``"tf32"``: cuBLAS rounds the fp32 operands to TF32
  (10 explicit mantissa bits) inside the tensor cores and accumulates in fp32; compute-bound on the tensor
  cores. Storage, inputs and output stay fp32: no casts, no extra memory traffic.

Both arms set ``torch.backends.cuda.matmul.fp32_precision`` for their one call and restore the previous value,
so the mode cannot leak into other cases (the new API only: mixing it with ``allow_tf32`` raises in torch).

Shape ``(m, k, n)``. Timing shape (4096, 4096, 11008): the MLP up projection (4096 -> 11008) of a
Llama-2-7B layer over a batch of 4096 tokens.

Napkin math on an H100 SXM:
- work: 2 * 4096 * 4096 * 11008 = 369 GFLOP; bytes 4 B * (4096*4096 + 4096*11008 + 4096*11008) = 428 MB.
- baseline: 369 GFLOP at ~50-60 TFLOP/s fp32 FFMA (67 peak) = ~6.2-7.4 ms.
- optimized: 369 GFLOP at ~350-450 TFLOP/s TF32 dense (495 peak) = ~0.8-1.05 ms; the 428 MB take ~0.15 ms at
  ~3 TB/s and overlap with the math.
- predicted speedup: ~6-8x (about the ratio of the two peaks).

Precision: TF32 keeps 10 explicit mantissa bits (unit roundoff 2^-11 = 4.9e-4). Rounding both operands gives
products with ~sqrt(2/3) * 4.9e-4 = 4e-4 relative error, uncorrelated across k, so the output's relative error
norm is ~4e-4 (up to ~1e-3 if the hardware truncates); the case declares 3e-3.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations a (m, k) and weights b (k, n), unit-normal fp32."""
    m, k, n = shape
    gen = seeded(seed)
    return normal(gen, (m, k), dtype, device), normal(gen, (k, n), dtype, device)


def _matmul_in(precision: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` with cuBLAS's fp32 matmul precision set to ``precision`` for this call only."""
    matmul = torch.backends.cuda.matmul
    previous = matmul.fp32_precision
    matmul.fp32_precision = precision
    try:
        return torch.matmul(a, b)
    finally:
        matmul.fp32_precision = previous


def baseline_fp32_cuda_cores(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IEEE fp32 GEMM: FFMA on the CUDA cores."""
    return _matmul_in("ieee", a, b)


def optimized_tf32_tensor_cores(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same fp32 tensors through the tensor cores in TF32 mode (fp32 accumulation)."""
    return _matmul_in("tf32", a, b)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read a and b once and write the product once; 2 flops per multiply-add, run in TF32."""
    m, k, n = shape
    return Work(bytes=float(itemsize(dtype) * (m * k + k * n + m * n)), flops=float(2 * m * k * n), flops_at="tf32")
