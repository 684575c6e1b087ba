"""Tensor-core dot: one Triton GEMM kernel on fp32 operands (CUDA-core FMA) vs on bf16 operands (wgmma).

Both arms run ``triton_gemm``'s kernel, fp32 in and fp32 out, with fp32 accumulation; only the operand dtype of
``tl.dot`` differs. (ch01 ``tensor_core_bf16`` and ch02 ``tf32_tensor_cores`` make the same move in cuBLAS.)

- Baseline: fp32 operands with ``input_precision="ieee"``: Triton lowers the dot to FFMA on the CUDA cores
  (128 x 128 x 32 tiles, 8 warps, 3 pipeline stages). Bound by the fp32 FMA pipes (67 TFLOP/s peak on an H100
  SXM) and by the shared-memory reads that feed them.
- Optimized: the operands cast to bf16 (two HBM-bound cast kernels, paid inside the arm), then the same kernel
  with bf16 operands: the dot becomes Hopper wgmma (128 x 256 x 64 tiles, 8 warps, 3 stages, the Triton matmul
  tutorial's Hopper configuration). Bound by the tensor cores (989 TFLOP/s bf16 dense peak).

Shape ``(m, k, n)``; ``a`` (m, k), ``b`` (n, k). Timing shape (4096, 4096, 4096): the attention output projection
of a Llama-3-8B layer (4096 -> 4096) over 4096 tokens.

Napkin math on an H100 SXM:
- work: 2 * 4096^3 = 137 GFLOP; bytes 4 B * 3 * 4096^2 = 201 MB (fp32 in and out, each once).
- baseline: each thread holds an 8 x 8 accumulator block and per k step reads 16 operands from shared memory
  for 64 FFMAs: the shared-memory reads (128 B/clk per SM) and the FMA pipes are about balanced, so Triton's FMA
  dot reaches ~20-40 TFLOP/s (cuBLAS's SIMT GEMM ~50) = ~3.4-6.9 ms.
- optimized: casts read 134 MB and write 67 MB = ~70 us; the wgmma GEMM at ~450-550 TFLOP/s (a cold-L2
  4096^3 call; cuBLAS does ~470 there) = ~0.25-0.3 ms. Total ~0.33-0.37 ms.
- predicted speedup: ~10-20x.

Precision: bf16 keeps 8 significand bits (unit roundoff 2^-8 = 0.39%). Rounding both unit-normal operands gives
products with ~0.3% relative error, independent across k, so the output's relative error norm is ~0.3%; the
case declares 1%.

Measured (H100 VM, 2026-11-21, three processes at commits c0a8b42, 401dac0, 6242554): the baseline's Triton FMA GEMM
ran at about 22 TFLOP/s (derived: 2 * 4096^3 flops / 6.19-6.24 ms), well below cuBLAS fp32 (50.5-52.1 TFLOP/s, the
plugin's measured fp32 ceiling in the same processes), so the measured 21.27-21.70x is against this kernel on CUDA
cores, not against the best fp32 path.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from kernels.ch10.triton_gemm import gemm_tile_per_program
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations a (m, k) and weights b (n, k), unit-normal, in the case dtype (fp32)."""
    m, k, n = shape
    gen = seeded(seed)
    return normal(gen, (m, k), dtype, device), normal(gen, (n, k), dtype, device)


def baseline_fp32_fma_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """fp32 operands, ``input_precision="ieee"``: the Triton dot runs as FFMA on the CUDA cores."""
    return gemm_tile_per_program(a, b, a.dtype, block=(128, 128, 32), num_warps=8, num_stages=3, precision="ieee")


def optimized_bf16_wgmma_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bf16 operands (cast here), fp32 accumulation and output: the same kernel's dot runs as wgmma."""
    return gemm_tile_per_program(a.to(torch.bfloat16), b.to(torch.bfloat16), a.dtype, block=(128, 256, 64),
                                 num_warps=8, num_stages=3)


def reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` in float64."""
    return a.double() @ b.double().t()


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read a and b once and write the product once, in the case dtype; 2 flops per multiply-add, run in bf16."""
    m, k, n = shape
    return Work(bytes=float(itemsize(dtype) * (m * k + n * k + m * n)), flops=float(2 * m * k * n), flops_at="bf16")
