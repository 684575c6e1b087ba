"""BN + residual + ReLU fusion: a residual block's scale, shift, residual add and ReLU as eager ops vs one Triton pass.

The tail of a ResNet-50 bottleneck block at inference, with its last BatchNorm folded into a per-channel
``scale``/``shift`` (the usual inference transform): ``y = relu(x * scale + shift + residual)``, on channels-last
activations viewed as ``(pixels, channels)``.

- Baseline: the expression in eager PyTorch, ``torch.relu(x * scale + shift + residual)``: 4 elementwise kernels
  (mul, add, add, relu) and 3 full-size bf16 temporaries, each written to HBM and read back by the next kernel.
  HBM-bound on the temporaries.
- Optimized: ``_scale_shift_residual_relu``, one Triton pass over (rows x channels) tiles that loads x, residual
  and the channel vectors, computes in fp32 and writes y once. HBM-bound at the minimum traffic.

Shape ``(pixels, channels)``, bf16. Timing shape (200704, 256): the output of a ResNet-50 stage-1 bottleneck
(256 channels at 56 x 56) for a batch of 64 images, 51.4 M elements, 103 MB per tensor.

Napkin math on an H100 SXM (~3.0 TB/s):
- work: read x and residual, write y: 3 x 103 MB = 308 MB; 4 flops per element.
- baseline: mul (read x, write t1) 2 passes, add shift 2, add residual 3, relu 2 = 9 x 103 MB = 925 MB = ~310 us;
  each 103 MB temporary is twice the 50 MB L2, so it goes to HBM and back.
- optimized: 308 MB = ~105 us.
- predicted speedup: 9 / 3 passes = 3x (~2.7-3x with the eager kernels' bandwidth efficiency).
The fused arm is also more accurate: it rounds to bf16 once instead of after every op.

Measured (H100 VM, 2026-11-21, three processes at commits c0a8b42, 401dac0, 6242554; named epilogue_fusion then):
435 us vs 99.3-99.4 us, 4.38x in each, above the predicted ~2.7-3x and above the header's own 9 / 3 bytes ratio.
The pass count holds (4 kernels, 9 passes) and the fused arm ran at the copy rate (3.10 TB/s, 103% of the measured
copy ceiling), so the eager chain ran below it: ~2.13 TB/s (derived: 925 MB / 435 us), ~69% of the fused rate.
Likely (not profiled): ``x * scale`` and ``+ shift`` broadcast a (channels,) vector, a stride-0 operand that takes
PyTorch's elementwise kernels off their vectorized contiguous path; the residual add and the ReLU stay on it.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work

TILE_ELEMENTS = 4096  # per program: 16 rows of 256 channels at the timing shape


@triton.jit
def _scale_shift_residual_relu(y_ptr, x_ptr, res_ptr, scale_ptr, shift_ptr, rows, channels,
                               BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    c = tl.arange(0, BLOCK_C)
    c_mask = c < channels
    mask = (r[:, None] < rows) & c_mask[None, :]
    offsets = r[:, None] * channels + c[None, :]
    scale = tl.load(scale_ptr + c, mask=c_mask, other=0.0).to(tl.float32)
    shift = tl.load(shift_ptr + c, mask=c_mask, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    res = tl.load(res_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    y = tl.maximum(x * scale[None, :] + shift[None, :] + res, 0.0)
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)


def inputs(shape: tuple[int, ...], dtype: str, seed: int,
           device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Conv output x and the block's input (residual), unit-normal; folded BatchNorm scale ~N(1, 0.2^2) and shift
    ~N(0, 0.2^2) per channel, so about half of the outputs are clipped by the ReLU."""
    pixels, channels = shape
    gen = seeded(seed)
    x = normal(gen, (pixels, channels), dtype, device)
    residual = normal(gen, (pixels, channels), dtype, device)
    scale = (1.0 + normal(gen, (channels,), "fp32", device, std=0.2)).to(x.dtype)
    shift = normal(gen, (channels,), dtype, device, std=0.2)
    return x, residual, scale, shift


def baseline_eager_chain(x: torch.Tensor, residual: torch.Tensor, scale: torch.Tensor,
                         shift: torch.Tensor) -> torch.Tensor:
    """The epilogue as written in eager PyTorch: 4 kernels, 3 full-size temporaries."""
    return torch.relu(x * scale + shift + residual)


def optimized_fused_triton(x: torch.Tensor, residual: torch.Tensor, scale: torch.Tensor,
                           shift: torch.Tensor) -> torch.Tensor:
    """One pass: read x and residual once, fp32 math in registers, write y once."""
    rows, channels = x.shape
    block_c = triton.next_power_of_2(channels)
    block_r = max(1, TILE_ELEMENTS // block_c)
    y = torch.empty_like(x)
    _scale_shift_residual_relu[(triton.cdiv(rows, block_r),)](y, x, residual, scale, shift, rows, channels,
                                                              BLOCK_R=block_r, BLOCK_C=block_c, num_warps=8)
    return y


def reference(x: torch.Tensor, residual: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The epilogue in float64."""
    return torch.relu(x.double() * scale.double() + shift.double() + residual.double())


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Read x and residual once, write y once (the channel vectors are noise); mul, 2 adds and a max per element."""
    pixels, channels = shape
    return Work(bytes=float(itemsize(dtype) * (3 * pixels * channels + 2 * channels)),
                flops=float(4 * pixels * channels))
