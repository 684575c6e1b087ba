"""What the chapter's FP8 cases share: e4m3 rowwise quantization (one fp32 scale per row, ``x ~= q * scale``), the
rowwise-scaled product on ``torch._scaled_mm``, and its emulation in float for devices without one.

A row's scale is ``amax(|row|) / 448`` (448 is e4m3's largest finite value), so the row's largest element maps to
448 and the others keep e4m3's 3 mantissa bits relative to their own magnitude (unit roundoff 2^-4); an all-zero row
gets the scale of a tiny amax and quantizes to zeros. One Triton program per row (on CUDA) reads the row twice
(the absolute maximum, then the scaled values rounded to nearest even) and writes it once in fp8: 3 bytes moved per
bf16 element, the second read mostly from L2 (a row of 14336 bf16 values is 28 KB). Off CUDA the kernel writes the scaled fp32
values and PyTorch rounds them to e4m3: the Triton interpreter's fp32 -> e4m3 conversion is wrong (triton 3.9,
measured: 124.3 becomes 64, a mantissa carry into the exponent lost; 100 becomes 104, a tie not rounded to even;
0.001 becomes 0, not the subnormal 0.00195), while its e4m3 -> fp32 conversion is exact for all 254 finite codes.

``scaled_mm_rowwise`` multiplies two rowwise-quantized operands with ``torch._scaled_mm``, which applies ``scale_a``
(M, 1) and ``scale_b`` (1, N) in its epilogue (CUTLASS's ``f8f8bf16_rowwise`` on sm_90) where
``kernels.compat.rowwise_scaled_mm_reason`` finds it working; on a CPU without it, the same function by emulation:
dequantize in fp32, multiply, round the product to bf16. On a GPU without it, it raises rather than time an
emulation.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels import compat

E4M3_MAX = 448.0
MAX_BLOCK = 4096


@triton.jit
def _quantize_rows_kernel(x_ptr, q_ptr, scale_ptr, rows, cols, E4M3_MAX: tl.constexpr, ROWS: tl.constexpr,
                          BLOCK: tl.constexpr, ROUND_TO_FP8: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    offs = tl.arange(0, BLOCK)
    amax = tl.zeros([ROWS, BLOCK], tl.float32)
    for start in range(0, cols, BLOCK):
        mask = (r < rows)[:, None] & (start + offs < cols)[None, :]
        x = tl.load(x_ptr + r[:, None] * cols + start + offs[None, :], mask=mask, other=0.0).to(tl.float32)
        amax = tl.maximum(amax, tl.abs(x))
    top = tl.maximum(tl.max(amax, 1), 1e-12)  # an all-zero row quantizes to zeros, not NaN
    inverse = E4M3_MAX / top
    for start in range(0, cols, BLOCK):
        mask = (r < rows)[:, None] & (start + offs < cols)[None, :]
        x = tl.load(x_ptr + r[:, None] * cols + start + offs[None, :], mask=mask, other=0.0).to(tl.float32)
        q = tl.clamp(x * inverse[:, None], -E4M3_MAX, E4M3_MAX)
        if ROUND_TO_FP8:
            q = q.to(tl.float8e4nv, fp_downcast_rounding="rtne")
        tl.store(q_ptr + r[:, None] * cols + start + offs[None, :], q, mask=mask)
    tl.store(scale_ptr + r, top / E4M3_MAX, mask=r < rows)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (rows, cols) as e4m3 ``q`` (rows, cols, contiguous) and fp32 ``scale`` (rows, 1), ``x ~= q * scale``.
    One program per row on CUDA; off CUDA (the interpreter, whose cost is per program) a tile of rows each."""
    x = x.contiguous()
    rows, cols = x.shape
    on_cuda = x.device.type == "cuda"
    q = torch.empty((rows, cols), dtype=torch.float8_e4m3fn if on_cuda else torch.float32, device=x.device)
    scale = torch.empty((rows, 1), dtype=torch.float32, device=x.device)
    block = min(MAX_BLOCK, triton.next_power_of_2(cols))
    per_program = 1 if on_cuda else max(1, min(triton.next_power_of_2(rows), MAX_BLOCK // block))
    if rows:
        _quantize_rows_kernel[(triton.cdiv(rows, per_program),)](
            x, q, scale, rows, cols, E4M3_MAX=E4M3_MAX, ROWS=per_program, BLOCK=block, ROUND_TO_FP8=on_cuda,
            num_warps=8)
    return (q, scale) if on_cuda else (q.to(torch.float8_e4m3fn), scale)


def quantize_rows_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``quantize_rows`` in PyTorch ops: the definition the kernel is tested against."""
    top = x.float().abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)
    q = (x.float() * (E4M3_MAX / top)).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q, top / E4M3_MAX


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``q * scale`` in fp32 (``scale`` broadcasts: (rows, 1) for rows, (1, cols) for columns)."""
    return q.float() * scale


def emulated_scaled_mm(a: torch.Tensor, scale_a: torch.Tensor, b: torch.Tensor, scale_b: torch.Tensor,
                       out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """``(a * scale_a) @ (b * scale_b)`` dequantized in fp32, multiplied in fp32, rounded to ``out_dtype``."""
    return (dequantize(a, scale_a) @ dequantize(b, scale_b)).to(out_dtype)


def scaled_mm_rowwise(a: torch.Tensor, scale_a: torch.Tensor, b: torch.Tensor, scale_b: torch.Tensor) -> torch.Tensor:
    """``(a * scale_a) @ (b * scale_b)`` in bf16 for e4m3 ``a`` (M, K) row-major with ``scale_a`` (M, 1) and e4m3
    ``b`` (K, N) column-major (the transpose of a contiguous (N, K)) with ``scale_b`` (1, N); fp32 accumulation."""
    reason = compat.rowwise_scaled_mm_reason(a.device)
    if reason is None:
        return torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)
    if a.device.type == "cuda":
        raise RuntimeError(f"this case needs FP8 tensor cores with rowwise scaling (sm_90): {reason}")
    return emulated_scaled_mm(a, scale_a, b, scale_b)
