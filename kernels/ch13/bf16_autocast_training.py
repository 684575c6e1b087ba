"""bf16 autocast training: an fp32 training step with TF32 matmuls vs the same step under bf16 autocast.

- Baseline: forward and backward of a Llama-style causal LM in fp32 (weights, activations and gradients fp32) with
  cuBLAS's fp32 matmul precision set to TF32, what a careful engineer runs before mixed precision: every GEMM on
  the TF32 tensor cores (494 TFLOP/s dense peak), every activation 4 B. SDPA has no fp32 flash kernel: its
  attention runs the memory-efficient or the math backend (attention is ~4% of the step's flops).
- Optimized: the same step under ``torch.autocast(dtype=torch.bfloat16)`` over the same fp32 master weights
  (Hugging Face's ``bf16=True``): GEMMs and SDPA (flash) in bf16 (989 TFLOP/s dense peak) with fp32 accumulation,
  activations saved for backward in 2 B, the weights cast to bf16 once per forward; RMSNorm's fp32 upcast, the
  softmax of the loss and the fp32 gradients stay as they were. TF32 stays set, so autocast is the only change.

Both arms return the loss and every parameter's gradient (``torch.autograd.grad``, which leaves the model
untouched); the optimizer step, identical in both, is the lesson of ``fused_adamw``.

Shape ``(hidden, layers, batch, seq)``: the width picks the model (``kernels.ch13.training``). Timing shape
(2048, 4, 2, 2048): four Llama-3.2-1B layers (hidden 2048, 32 q / 8 KV heads of 64, SwiGLU 8192) with its embedding,
tied LM head over 128,256 tokens and loss, on 2 x 2048 = 4096 tokens: 506 M parameters, 243 M in the layers and
263 M in the embedding/head. Four layers rather than sixteen so that the float64 check at the timing shape fits
beside the arms in 80 GB.

Napkin math on an H100 SXM:
- GEMM work: 2 x 506 M x 4096 = 4.15 TFLOP forward, x3 with backward = 12.4 TFLOP; causal attention adds
  4 layers x 2 x 2 x 32 x 2048^2 x 64 / 2 = 0.14 TFLOP forward, ~0.5 TFLOP with backward.
- baseline: 12.9 TFLOP at ~330-380 TFLOP/s TF32 (the 4096-token GEMMs reach ~70-75% of the 494 peak) = ~34-39 ms;
  fp32 elementwise work (RMSNorm chains, RoPE, SwiGLU, residual adds, autograd's accumulations, and their
  backward: ~1.3 MB per token and layer) moves ~21 GB = ~7 ms; the fp32 logits (4096 x 128,256 x 4 B = 2.1 GB) are
  written, read by the loss, and their gradient written and read again: ~10 GB, ~3.5 ms. Total ~45-50 ms.
- optimized: 12.9 TFLOP at ~600-700 TFLOP/s bf16 = ~18-21.5 ms; elementwise traffic shrinks less than the GEMMs'
  time, since the residual stream, the norms and RoPE (fp32 cos/sin tables) stay fp32 under autocast: ~16 GB,
  ~5.5 ms (see ``compiled_layers_and_loss``); the loss upcasts the bf16 logits to fp32 and the gradient flows back
  through a bf16 copy: ~12 GB, ~4 ms; weight casts to bf16 and gradient casts back, 506 M x 12 B = 6 GB = ~2 ms.
  Total ~29-33 ms.
- predicted speedup: ~1.4-1.7x on H100, the same on H200 (compute-bound: the same tensor cores; the extra
  bandwidth trims only the bytes-bound ~25-35% of each arm, in both).

Precision: under autocast every GEMM operand is rounded to bf16 (unit roundoff 2^-8 = 3.9e-3), and the weight
gradients with the least signal suffer most: those of the q/k projections (through the softmax's backward, which
cancels where attention is near uniform, as it is with random weights) and of the norm weights. Measured on the
CPU against float64 (CPU autocast computes the same bf16-operand, fp32-accumulate GEMMs), the worst tensor's
relative error: 1.2e-2 for one Llama-3.2-1B layer with its head at 1 x 64 tokens, 2.2e-2 for two layers at
1 x 256; at TINY width 1.0-1.4e-2 at one layer, 1.9-2.6e-2 at two to four layers (2 x 256 to 4 x 2048 tokens) and
3.0-3.4e-2 at eight; the loss within 3e-4. The case declares 6e-2, above what four layers should reach. The
baseline's TF32 GEMMs (2^-11) should err ~8x less, about the tf32 bound of 3e-3 at this depth; the declared
tolerance covers it too.

Measured once on an H100 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording):
2048x4x2x2048: 89.6 ms -> 42.1 ms, 2.13x [2.01, 2.14].
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import seeded, torch_dtype
from kernels.ch13.training import (causal_lm_loss, config, decoder, fp32_matmul_precision, layerwise_grads,
                                   next_token_loss, parameters, step_work, token_batch)
from kernels.llm import Decoder
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Token ids and labels (batch, seq), then the seeded model (fp32 weights)."""
    hidden, layers, batch, seq = shape
    cfg = config(hidden, layers)
    tokens, labels = token_batch(seeded(seed), (batch, seq), cfg.vocab, device)
    return tokens, labels, decoder(cfg, torch_dtype(dtype), seed, device, max_positions=seq)


def _step(tokens: torch.Tensor, labels: torch.Tensor, model: Decoder, autocast: bool) -> tuple[torch.Tensor, ...]:
    with fp32_matmul_precision("tf32"):
        with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = causal_lm_loss(model, tokens, labels)
        grads = torch.autograd.grad(loss, parameters(model))
    return (loss.detach(), *grads)


def baseline_tf32_step(tokens: torch.Tensor, labels: torch.Tensor, model: Decoder) -> tuple[torch.Tensor, ...]:
    """Loss and gradients of one fp32 step, GEMMs in TF32."""
    return _step(tokens, labels, model, autocast=False)


def optimized_bf16_autocast_step(tokens: torch.Tensor, labels: torch.Tensor,
                                 model: Decoder) -> tuple[torch.Tensor, ...]:
    """The same step under bf16 autocast: bf16 GEMMs and attention, fp32 master weights and gradients."""
    return _step(tokens, labels, model, autocast=True)


def reference(tokens: torch.Tensor, labels: torch.Tensor, model: Decoder) -> tuple[torch.Tensor, ...]:
    """The step in float64 on an exact float64 copy of the model, one layer's activations at a time."""
    loss, grads = layerwise_grads(model.as_dtype(torch.float64), tokens,
                                  lambda logits: next_token_loss(logits, labels))
    return (loss, *grads)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """GEMM and attention flops of forward and backward, run at bf16 in the optimized arm; the fp32 weights read and
    gradients written once (``training.step_work``)."""
    return step_work(shape, flops_at="bf16")
