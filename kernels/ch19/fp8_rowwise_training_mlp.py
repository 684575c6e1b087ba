"""FP8 rowwise training: a bf16 SwiGLU MLP block's forward and backward vs the same block with its forward and
input-gradient GEMMs in e4m3 with rowwise scales (torchao's rowwise recipe, the weight gradient kept in bf16).

- Baseline: Hugging Face's ``LlamaMLP`` in bf16, ``down(silu(gate(x)) * up(x))``, forward and ``autograd.grad``:
  nine cuBLAS bf16 GEMMs (per linear: forward, input gradient "dgrad", weight gradient "wgrad"), fp32 accumulation.
- Optimized: a custom ``autograd.Function`` with the same math. Forward: ``x`` and ``h = silu(gate) * up`` are
  quantized per row (per token) and each weight per output channel, and the three GEMMs run as
  ``torch._scaled_mm(a_fp8, b_fp8, scale_a (M, 1), scale_b (1, N))`` (CUTLASS's rowwise kernel on sm_90, bf16 out).
  Backward: the output gradient is quantized per row and each weight per input channel (its transpose per row),
  and the two dgrads run in fp8 the same way. The three wgrads stay in bf16 on the unquantized activations and
  gradients: torchao's ``ROWWISE_WITH_GW_HP`` (a weight gradient sums over every token, where e4m3's error would
  not average out per row). Quantization is one Triton kernel per operand (``kernels.ch19.fp8``), not fused with
  the producers. SiLU, its backward and the product run in bf16 as in the baseline.

Shape ``(tokens, hidden, intermediate)``. Timing shape (8192, 4096, 14336): one Llama-3-8B MLP over a micro-batch of
8192 tokens.

Napkin math on an H100 SXM (bf16 GEMMs ~720 TFLOP/s achieved, fp8 ~1200, copy ceiling ~3.0 TB/s):
- work: 9 GEMMs of 2 x 8192 x 4096 x 14336 = 0.96 TFLOP each: 8.7 TFLOP.
- baseline: 8.7 TFLOP at 720 TFLOP/s = 12.0 ms, plus the SiLU, product and their backward over four 235 MB
  tensors (~1.5 GB moved, ~0.5 ms): ~12.5 ms.
- optimized: six fp8 GEMMs, 5.8 TFLOP at ~1200 = 4.8 ms; three bf16 wgrads 2.9 TFLOP = 4.0 ms; quantization of x,
  h, three weights twice (once transposed, a bf16 copy first) and three output gradients: ~4.5 GB moved, ~1.5 ms;
  the same pointwise work ~0.5 ms: ~10.8 ms.
- predicted speedup: H100 1.1-1.25x. H200: the same GEMM peaks (the same chip), slightly cheaper quantization
  (4.25 TB/s): 1.1-1.3x. (torchao reports up to 1.25x end-to-end for rowwise fp8 training at 8B parameters;
  torchtitan's first Llama-3-8B rowwise run on 8 H100s went from 5,760 to 6,424 tokens/s, 1.12x.)

Precision: each fp8 GEMM rounds both operands to e4m3 (unit roundoff 2^-4, ~2.6% RMS per operand), and the down
projection's input ``h`` already carries the gate and up projections' error. Measured in float64 emulation on the
CPU (the e4m3 rounding exact, everything else in float64) against the float64 block, three seeds each at
(257, 128, 80), (1024, 256, 896) and (512, 512, 1792): the output 6.2-6.5%, the input gradient 6.3-6.7%, the
gate, up and down weight gradients 5.6-5.8%, 5.0-5.4% and 5.3-5.4% (the bf16 wgrads inherit the forward's error in
``h``, gate and up); the arm itself (bf16 around the e4m3 GEMMs) within 0.05% of the emulation; the bf16 baseline
0.4%. Fewer elements average less: the worst output at the check shapes, eight seeds, was 6.7% at (33, 64, 48) and
(40, 32, 80) and 7.5% at one token, (1, 256, 512) (10.6% at (1, 16, 16), too noisy to check against). Declared 10%.

Measured once on an H200 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording):
8192x4096x14336: 13 ms -> 11.4 ms, 1.14x [1.12, 1.15].
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import normal, seeded
from kernels.ch19.fp8 import quantize_rows, scaled_mm_rowwise
from pytest_aiperf import Work


def fp8_linear(x: torch.Tensor, x_scale: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` with ``x`` already quantized per row and ``weight`` (out, in) quantized per output channel
    here: e4m3 operands, bf16 out."""
    w, w_scale = quantize_rows(weight)
    return scaled_mm_rowwise(x, x_scale, w.t(), w_scale.t())


def fp8_dgrad(grad: torch.Tensor, grad_scale: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``grad @ weight`` with ``grad`` quantized per row and ``weight`` (out, in) per input channel: its transpose is
    copied contiguous and quantized per row, which is the column-major operand ``_scaled_mm`` takes."""
    w_t, w_scale = quantize_rows(weight.t())
    return scaled_mm_rowwise(grad, grad_scale, w_t.t(), w_scale.t())


class Fp8RowwiseMLP(torch.autograd.Function):
    """``down(silu(gate(x)) * up(x))`` with the forward and dgrad GEMMs in e4m3 (rowwise scales) and the wgrads in
    bf16; saves what autograd saves for the bf16 block (x, gate, up, silu(gate), h)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor,
                w_down: torch.Tensor) -> torch.Tensor:
        x_fp8, x_scale = quantize_rows(x)
        gate = fp8_linear(x_fp8, x_scale, w_gate)
        up = fp8_linear(x_fp8, x_scale, w_up)
        act = F.silu(gate)
        h = act * up
        h_fp8, h_scale = quantize_rows(h)
        ctx.save_for_backward(x, w_gate, w_up, w_down, gate, up, act, h)
        return fp8_linear(h_fp8, h_scale, w_down)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, w_gate, w_up, w_down, gate, up, act, h = ctx.saved_tensors
        grad_y = grad_y.contiguous()
        gy_fp8, gy_scale = quantize_rows(grad_y)
        grad_h = fp8_dgrad(gy_fp8, gy_scale, w_down)
        grad_w_down = grad_y.t() @ h
        grad_up = grad_h * act
        grad_gate = torch.ops.aten.silu_backward(grad_h * up, gate)
        gg_fp8, gg_scale = quantize_rows(grad_gate)
        gu_fp8, gu_scale = quantize_rows(grad_up)
        grad_x = fp8_dgrad(gg_fp8, gg_scale, w_gate) + fp8_dgrad(gu_fp8, gu_scale, w_up)
        return grad_x, grad_gate.t() @ x, grad_up.t() @ x, grad_w_down


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """The block's input x (tokens, hidden), unit-normal; gate and up weights (intermediate, hidden) and the down
    weight (hidden, intermediate) with std fan_in^-1/2; the gradient at the block's output, std
    (tokens x hidden)^-1/2 (a mean loss's scale)."""
    tokens, hidden, intermediate = shape
    gen = seeded(seed)
    x = normal(gen, (tokens, hidden), dtype, device)
    w_gate = normal(gen, (intermediate, hidden), dtype, device, std=hidden**-0.5)
    w_up = normal(gen, (intermediate, hidden), dtype, device, std=hidden**-0.5)
    w_down = normal(gen, (hidden, intermediate), dtype, device, std=intermediate**-0.5)
    grad_y = normal(gen, (tokens, hidden), dtype, device, std=(tokens * hidden) ** -0.5)
    return x, w_gate, w_up, w_down, grad_y


def _leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().requires_grad_() for t in tensors]


def baseline_bf16_mlp(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor,
                      grad_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The bf16 block, forward and backward: its output, then the gradients of x and of the three weights."""
    leaves = _leaves(x, w_gate, w_up, w_down)
    x, w_gate, w_up, w_down = leaves
    y = F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)
    return (y.detach(), *torch.autograd.grad(y, leaves, grad_y))


def optimized_fp8_rowwise_mlp(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor,
                              grad_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same block with the forward and dgrad GEMMs in e4m3 (rowwise scales), the wgrads in bf16."""
    leaves = _leaves(x, w_gate, w_up, w_down)
    y = Fp8RowwiseMLP.apply(*leaves)
    return (y.detach(), *torch.autograd.grad(y, leaves, grad_y))


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Nine GEMMs of 2 x tokens x hidden x intermediate flops each, six of them in fp8 (the wgrads' third runs in
    bf16, so the optimized arm's share of the fp8 ceiling reads lower than its GEMMs' own). Bytes: x, the weights
    and the output gradient read, the output and every gradient written once, in bf16."""
    tokens, hidden, intermediate = shape
    elements = 2 * (2 * tokens * hidden + 3 * hidden * intermediate)
    return Work(bytes=float(2 * elements), flops=float(9 * 2 * tokens * hidden * intermediate), flops_at="fp8")
