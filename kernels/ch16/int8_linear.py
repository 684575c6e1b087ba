"""Int8 weight-only linear layers: per-output-channel symmetric quantization and a Triton kernel that loads the int8
weights, dequantizes them in registers and accumulates in fp32 (gpt-fast's int8 weight-only recipe, as a kernel).

Quantization: each output row n of a weight ``[N, K]`` gets the scale ``max|w[n]| / 127`` (fp32) and
``q = round(w / scale)`` in -127..127; ``w ~ q x scale``. The kernel computes ``y[m, n] = scale[n] x sum_k x[m, k] x
q[n, k]``: the scale factors out of the sum, so it is applied once per output after accumulation.

Kernel: one program per ``BLOCK_N`` output channels, every row of x (a decode batch: ``BLOCK_M`` <= 16), looping over
K in ``BLOCK_K`` steps: a ``[BLOCK_M, BLOCK_K]`` tile of x and a ``[BLOCK_N, BLOCK_K]`` tile of int8 weights are
widened to fp32 and multiplied on the CUDA cores (a broadcast product summed over K, not ``tl.dot``: at M <= 8 a
tensor-core tile would be mostly padding, and the step stays bound by the weight bytes). It reads each weight byte
once per call, half of what a bf16 GEMV reads. The math is fp32 on every path, so the Triton interpreter checks it
in bf16 too (its bf16 ``tl.dot`` is the part that is wrong there).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import nn

BLOCK_N = 16
BLOCK_K = 128
MAX_ROWS = 16


@triton.jit
def int8_weight_linear_kernel(x_ptr, w_ptr, scale_ptr, out_ptr, M, N, K, stride_xm, stride_wn, stride_om,
                              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.arange(0, BLOCK_M)
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + ks
        x = tl.load(x_ptr + rows[:, None] * stride_xm + k[None, :], mask=(rows[:, None] < M) & (k[None, :] < K),
                    other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols[:, None] * stride_wn + k[None, :], mask=(cols[:, None] < N) & (k[None, :] < K),
                    other=0).to(tl.float32)
        acc += tl.sum(x[:, None, :] * w[None, :, :], axis=2)
    scale = tl.load(scale_ptr + cols, mask=cols < N, other=0.0)
    out = acc * scale[None, :]
    tl.store(out_ptr + rows[:, None] * stride_om + cols[None, :], out.to(out_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``(q [N, K] int8, scale [N] fp32)`` with ``weight ~ q x scale[:, None]``;
    computed in fp32 from the weight's values (an all-zero row gets scale 1)."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scale.contiguous()


def int8_linear(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x @ (q x scale[:, None]).T`` for x ``[..., K]`` with at most ``MAX_ROWS`` rows, in x's dtype."""
    rows, k = x.numel() // x.shape[-1], x.shape[-1]
    if rows > MAX_ROWS:
        raise ValueError(f"the int8 GEMV kernel serves decode batches of at most {MAX_ROWS} rows, got {rows}")
    flat = x.reshape(rows, k).contiguous()
    n = q.shape[0]
    out = torch.empty((rows, n), dtype=x.dtype, device=x.device)
    block_m = max(1, triton.next_power_of_2(rows))
    int8_weight_linear_kernel[(triton.cdiv(n, BLOCK_N),)](flat, q, scale, out, rows, n, k, flat.stride(0),
                                                          q.stride(0), out.stride(0), BLOCK_M=block_m,
                                                          BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K)
    return out.view(*x.shape[:-1], n)


class Int8WeightOnlyLinear(nn.Module):
    """A bias-free ``nn.Linear`` with int8 weights and fp32 per-channel scales, run by ``int8_linear``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Int8WeightOnlyLinear quantizes bias-free projections (Llama's)")
        q, scale = quantize_per_channel(linear.weight)
        self.register_buffer("weight_int8", q)
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return int8_linear(x, self.weight_int8, self.scale)


def dequantized(linear: nn.Linear) -> torch.Tensor:
    """The weight an ``Int8WeightOnlyLinear`` of ``linear`` multiplies by, in ``linear``'s dtype: q x scale."""
    q, scale = quantize_per_channel(linear.weight)
    return (q.to(torch.float64) * scale.to(torch.float64)[:, None]).to(linear.weight.dtype)


def quantize_linears(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` under ``model`` (projections, MLP, LM head) by an ``Int8WeightOnlyLinear``, in
    place; embeddings and norms stay in the model's dtype. A tied LM head gets its own int8 copy."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8WeightOnlyLinear(child))
        else:
            quantize_linears(child)
    return model
