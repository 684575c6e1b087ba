"""FP8 scaled GEMM: a bf16 linear layer vs the same layer with fp8 (e4m3) weights and per-call fp8 activations.

What each arm is given: a serving system stores the weight in the format it computes in, so the inputs carry the
bf16 master weight and its offline-quantized fp8 copy with a per-tensor scale (``w ~= w_fp8 * w_scale``). The
activations arrive in bf16 and the fp8 arm quantizes them on every call, inside its timed region.

- Baseline: ``F.linear(x, w)`` in bf16: one cuBLAS GEMM with fp32 accumulation, bf16 out. Bound by the bf16
  tensor cores (989 TFLOP/s dense peak).
- Optimized: dynamic per-tensor quantization of ``x`` in two Triton kernels (the absolute maximum by per-block
  maxima and one float ``atomic_max``; then ``x * 448 / amax`` rounded to e4m3, and the scale ``amax / 448``),
  then ``torch._scaled_mm`` (cuBLASLt fp8 GEMM, fp32 accumulation, both scales applied in the epilogue, bf16
  out). Bound by the fp8 tensor cores (1979 TFLOP/s dense peak), plus two HBM-bound passes over ``x``. This is
  the path of fp8 serving stacks (vLLM's dynamic per-tensor ``scaled_fp8_quant`` then a scaled GEMM).

Shape ``(tokens, hidden, out)``. Timing shape (8192, 4096, 14336): a Llama-3-8B MLP gate (or up) projection,
4096 -> 14336, over a prefill batch of 8192 tokens. Needs fp8 tensor cores (compute capability 8.9+).

Napkin math on an H100 SXM:
- work: 2 * 8192 * 4096 * 14336 = 962 GFLOP; minimum bytes (the fp8 arm's): x 67 MB (bf16) + w 59 MB (fp8)
  + out 235 MB (bf16) = 361 MB, far under the flops' time at either precision.
- baseline: cuBLAS bf16 at ~700-760 TFLOP/s = ~1.27-1.37 ms.
- optimized: quantization reads x twice and writes it once in fp8 (67 + 67 + 34 MB = 168 MB) = ~60-70 us plus
  three launches (zeroing the amax, two kernels); the fp8 GEMM at ~1200-1450 TFLOP/s (~60-73% of peak; with
  ``use_fast_accum=False``, the default and the plugin's fp8 ceiling, cuBLASLt promotes the partial sums to fp32
  at intervals, a few % slower than fast accumulation) = ~0.66-0.8 ms. Total ~0.73-0.87 ms.
- predicted speedup: ~1.5-1.8x (the 1.5x target at the low end; the quantization costs ~8% of the fp8 arm).

Precision: e4m3 keeps 3 mantissa bits (unit roundoff 2^-4 = 6.25%); round-to-nearest gives ~2.6% RMS relative
error per operand on normal data, so each product carries ~3.7% and, independent across k, so does the output
(3.7% measured in float64 emulation of both quantizations at k = 4096). The case declares 8%.

Measured (H100 VM, 2026-11-21, three processes at commits c0a8b42, 401dac0, 6242554): 1.21, 1.28 and 1.28 ms vs
0.735, 0.888 and 0.777 ms: 1.65x, 1.44x and 1.64x. Two are within the predicted ~1.5-1.8x; in the second process the
fp8 arm was 21% slower than in the first (1083 TFLOP/s, 74% of the measured fp8 ceiling, against 1309 and
1238 TFLOP/s, 93% and 84%) and fell just outside its ~0.73-0.87 ms estimate. The baseline is at or below its
~1.27-1.37 ms estimate. The cause of the fp8 arm's movement between processes was not investigated.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels import normal, seeded
from pytest_aiperf import Work

E4M3_MAX = 448.0
QUANT_BLOCK = 16384


@triton.jit
def _absmax(x_ptr, amax_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0).to(tl.float32)
    tl.atomic_max(amax_ptr, tl.max(tl.abs(x), axis=0))


@triton.jit
def _quantize_e4m3(x_ptr, q_ptr, amax_ptr, scale_ptr, n, E4M3_MAX: tl.constexpr, BLOCK: tl.constexpr):
    amax = tl.maximum(tl.load(amax_ptr), 1e-12)  # an all-zero x quantizes to zeros, not NaN
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0).to(tl.float32)
    q = tl.clamp(x * (E4M3_MAX / amax), -E4M3_MAX, E4M3_MAX)
    tl.store(q_ptr + offs, q.to(tl.float8e4nv, fp_downcast_rounding="rtne"), mask=offs < n)
    if tl.program_id(0) == 0:
        tl.store(scale_ptr, amax / E4M3_MAX)


def quantize_per_tensor(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x ~= q * scale`` with ``q`` in e4m3 and one fp32 ``scale`` (0-dim): amax pass, then the quantizing pass."""
    x = x.contiguous()
    amax = torch.zeros((), dtype=torch.float32, device=x.device)
    scale = torch.empty((), dtype=torch.float32, device=x.device)
    q = torch.empty(x.shape, dtype=torch.float8_e4m3fn, device=x.device)
    grid = (triton.cdiv(x.numel(), QUANT_BLOCK),)
    _absmax[grid](x, amax, x.numel(), BLOCK=QUANT_BLOCK, num_warps=8)
    _quantize_e4m3[grid](x, q, amax, scale, x.numel(), E4M3_MAX=E4M3_MAX, BLOCK=QUANT_BLOCK, num_warps=8)
    return q, scale


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """Activations x (tokens, hidden) unit-normal in bf16; the master weight w (out, hidden), std hidden^-1/2, in
    bf16; and w quantized offline to e4m3 with its per-tensor fp32 scale."""
    tokens, hidden, out = shape
    gen = seeded(seed)
    x = normal(gen, (tokens, hidden), dtype, device)
    w = normal(gen, (out, hidden), dtype, device, std=hidden**-0.5)
    w_scale = (w.float().abs().amax() / E4M3_MAX).reshape(())
    w_fp8 = (w.float() / w_scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return x, w, w_fp8, w_scale


def baseline_bf16_linear(x: torch.Tensor, w: torch.Tensor, w_fp8: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """The bf16 layer: one cuBLAS bf16 GEMM on the bf16 weight."""
    return F.linear(x, w)


def optimized_fp8_scaled_mm(x: torch.Tensor, w: torch.Tensor, w_fp8: torch.Tensor,
                            w_scale: torch.Tensor) -> torch.Tensor:
    """Quantize x to e4m3 (per-tensor scale, this call), then the fp8 GEMM on the stored fp8 weight."""
    x_fp8, x_scale = quantize_per_tensor(x)
    return torch._scaled_mm(x_fp8, w_fp8.t(), scale_a=x_scale, scale_b=w_scale, out_dtype=torch.bfloat16)


def reference(x: torch.Tensor, w: torch.Tensor, w_fp8: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """The layer on the master weight, in float64."""
    return x.double() @ w.double().t()


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read x (bf16) and the fp8 weight once, write the bf16 output once; 2 flops per multiply-add, run in fp8."""
    tokens, hidden, out = shape
    return Work(bytes=float(2 * tokens * hidden + hidden * out + 2 * tokens * out),
                flops=float(2 * tokens * hidden * out), flops_at="fp8")
