"""Compiled layers and loss: an eager bf16-autocast training step vs the same step with each decoder layer and the
loss run through ``torch.compile``, as torchtune's ``compile: True`` does it.

A profile of the eager step (the optimized arm of ``bf16_autocast_training``) shows, between the GEMMs, hundreds of
small elementwise kernels in the forward and again in the backward: RMSNorm's fp32 chain (pow, mean, rsqrt,
multiply, cast, weight), rotate-half RoPE (two products, a slice-negate-concatenate, a sum, in fp32 because the
cos/sin tables are), autocast's casts, SiLU and the gate product, the residual adds; and at the end the loss:
the logits upcast to fp32, log-softmax, the label gather, and in the backward a scatter, the softmax gradient and
a cast, each a full pass over tokens x vocabulary floats.

- Baseline: that eager step: forward under bf16 autocast over fp32 master weights, the next-token loss on fp32
  logits, ``torch.autograd.grad`` of every parameter.
- Optimized: the same step with every ``DecoderLayer`` called through one compiled function and the final norm,
  head and loss through another (``kernels.compat.compile``, Inductor on the GPU, ``dynamic=False``): the regional
  compilation of the repeated block that torchtitan and torchtune use for training. Dynamo traces one layer once and
  every layer reuses the graph (their weights are graph inputs); AOTAutograd derives the backward; Inductor fuses
  each chain of pointwise ops into one Triton kernel in both directions, recomputes cheap pointwise results in the
  backward instead of saving them, and turns the loss into a few passes over the bf16 logits. GEMMs stay cuBLAS,
  attention stays flash. Compilation happens in the first call, timed apart.

Shape ``(hidden, layers, batch, seq)``: the width picks the model (``kernels.ch13.training``). Timing shape
(2048, 4, 2, 2048): four Llama-3.2-1B layers with its embedding and tied 128,256-token head on 2 x 2048 tokens, the
shape of ``bf16_autocast_training`` (four layers keep the float64 check of bf16 gradients within the bf16 bound).

Napkin math on an H100 SXM:
- GEMMs: 12.9 TFLOP (see ``bf16_autocast_training``) at ~600-700 TFLOP/s = ~18-21.5 ms in both arms.
- eager elementwise, per token and layer: the two norms ~26 B x 2048 each (fp32 residual stream), RoPE ~40 B x
  (2048 + 512) in fp32, casts ~6 B x 2560, SiLU and product ~10 B x 8192, residual adds ~10 B x 2048 each: ~350 KB
  forward, ~1 MB with the backward; x 4 layers x 4096 tokens = ~16 GB = ~5.5 ms. The loss over 4096 x 128,256
  logits: ~12 GB = ~4 ms; autocast's weight casts ~2 ms. Eager step ~29-33 ms.
- compiled: the layers' chains at ~1/3 of their bytes (~2 ms), the loss at ~4 GB (~1.5 ms), the casts unchanged:
  ~23.5-27 ms.
- predicted speedup: ~1.15-1.3x on H100; on H200 ~1.1-1.25x (the saved bytes cost less at 4.8 TB/s).

Precision: both arms run bf16 autocast, but not the same roundings: Inductor keeps a fused chain's intermediates
in fp32 and rounds once, where eager rounds some of them to bf16 between ops, so the compiled arm's error is not a
multiple of the eager one's. The case declares the error of the bf16-autocast step instead (6e-2, as
``bf16_autocast_training`` does): measured on the CPU against float64, the worst gradient (a q/k projection's or a
norm weight's) was 2.0-2.6e-2 at two to four layers, too close to the checker's 3e-2 bf16 bound, which the eager
baseline would otherwise have to meet at the timing shape.

Measured once on an H100 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording):
2048x4x2x2048: 42.4 ms -> 26.5 ms, 1.60x [1.59, 1.61].
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch import nn

from kernels import compat, seeded
from kernels.ch13.training import (config, decoder, layerwise_grads, next_token_loss, parameters, step_work,
                                   token_batch)
from kernels.llm import Decoder, DecoderLayer
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Token ids and labels (batch, seq), then the seeded model (fp32 master weights)."""
    hidden, layers, batch, seq = shape
    cfg = config(hidden, layers)
    tokens, labels = token_batch(seeded(seed), (batch, seq), cfg.vocab, device)
    return tokens, labels, decoder(cfg, torch.float32, seed, device, max_positions=seq)


def _layer(layer: DecoderLayer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return layer(x, cos, sin)


def _head_loss(norm: nn.Module, head: nn.Linear, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return next_token_loss(head(norm(x)), labels)


@functools.cache
def _compiled() -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
    """The compiled layer and loss (compiled on first use, so the backend is read then)."""
    return compat.compile(_layer, dynamic=False), compat.compile(_head_loss, dynamic=False)


def regions(compiled: bool) -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
    """The layer call and the head-and-loss call of a step: through ``torch.compile`` or eager."""
    return _compiled() if compiled else (_layer, _head_loss)


def layers_and_loss(tokens: torch.Tensor, labels: torch.Tensor, model: Decoder, layer_fn: Callable[..., torch.Tensor],
                    loss_fn: Callable[..., torch.Tensor]) -> torch.Tensor:
    """The next-token loss of ``model`` over ``tokens``, every decoder layer through ``layer_fn`` and the final norm,
    head and loss through ``loss_fn`` (``regions``), under whatever autocast the caller set."""
    x = model.embed_tokens(tokens)
    cos, sin = model.cos[:tokens.shape[1]], model.sin[:tokens.shape[1]]
    for layer in model.layers:
        x = layer_fn(layer, x, cos, sin)
    return loss_fn(model.norm, model.lm_head, x, labels)


def _step(tokens: torch.Tensor, labels: torch.Tensor, model: Decoder, compiled: bool) -> tuple[torch.Tensor, ...]:
    with torch.autocast(tokens.device.type, dtype=torch.bfloat16):
        loss = layers_and_loss(tokens, labels, model, *regions(compiled))
    return (loss.detach(), *torch.autograd.grad(loss, parameters(model)))


def baseline_eager_step(tokens: torch.Tensor, labels: torch.Tensor, model: Decoder) -> tuple[torch.Tensor, ...]:
    """Loss and gradients of one eager bf16-autocast step."""
    return _step(tokens, labels, model, compiled=False)


def optimized_compiled_layers_and_loss(tokens: torch.Tensor, labels: torch.Tensor,
                                       model: Decoder) -> tuple[torch.Tensor, ...]:
    """The same step with the decoder layers through one compiled graph and the head and loss through another."""
    return _step(tokens, labels, model, compiled=True)


def reference(tokens: torch.Tensor, labels: torch.Tensor, model: Decoder) -> tuple[torch.Tensor, ...]:
    """The step in float64 on an exact float64 copy of the model, one layer's activations at a time."""
    loss, grads = layerwise_grads(model.as_dtype(torch.float64), tokens,
                                  lambda logits: next_token_loss(logits, labels))
    return (loss, *grads)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """GEMM and attention flops of forward and backward in bf16; the fp32 weights read and gradients written once
    (``training.step_work``)."""
    return step_work(shape, flops_at="bf16")
