"""Activation checkpointing: the backward of a decoder-layer stack keeping every activation vs recomputing each
layer's activations from its saved input.

- Baseline: forward and backward of a stack of Llama-style decoder layers in bf16 with autograd keeping what each
  op saves for backward (normed inputs and the fp32 RMSNorm intermediates, q/k/v before and after RoPE, the
  attention output, the SwiGLU gate, up and product, 8192 wide each): a pipeline stage, or the trunk of a model
  whose loss is someone else's; given the gradient at the stack's output, it returns the gradient at its input and
  every layer weight's.
- Optimized: each layer wrapped in ``torch.utils.checkpoint.checkpoint(layer, x, cos, sin, use_reentrant=False)``
  (Hugging Face's ``gradient_checkpointing_enable()``): the forward keeps only each layer's input, and the backward
  of a layer first runs its forward again. Both arms run the same ops on the same data in the same order.

Shape ``(hidden, layers, batch, seq)``: the width picks the model (``kernels.ch13.training``). Timing shape
(2048, 8, 4, 2048): eight of Llama-3.2-1B's sixteen layers (487 M parameters, 0.97 GB in bf16) on 4 x 2048 = 8192
tokens. Only the layers: the embedding and the 128,256-token head are not in the stack (their logits are the memory
lesson of a chunked loss), so the model is built with a one-token vocabulary. Eight layers, not sixteen, because
the checker holds a bf16 baseline to a 3e-2 relative error on every output, and the bf16 error of the weight
gradients grows with depth: measured on the CPU against float64 (TINY width, 4 x 512 tokens, three seeds), the worst
tensor (a norm weight's or a k projection's gradient) was 1.7-1.8e-2 at 8 layers and 2.2-2.3e-2 at 16.

Napkin math (the memory goal compares the peak bytes one call adds; the weights are there before it):
- saved per layer and token, bf16, counted from the ops above: the two RMSNorms ~10 x hidden B each (the fp32
  input, the fp32 normalized value, the bf16 cast), the q/k/v projections' input 2 x hidden, RoPE's inputs and
  rotated halves ~5 x hidden, SDPA's q, k, v, output and log-sum-exp ~5 x hidden, the MLP's input 2 x hidden and
  gate, up, SiLU and product 4 x 2 x 8192: ~66 x hidden = 135 KB. Eight layers x 8192 tokens: 8.9 GB.
- baseline peak: 8.9 GB of activations + the weight gradients as they accumulate (0.97 GB) = ~9.5-10 GB.
- optimized peak: 8 layer inputs x 8192 x 2048 x 2 B = 0.27 GB + one layer's recomputed activations 1.1 GB and
  the gradients flowing through it (~1 GB) + the weight gradients 0.97 GB = ~2.4-3 GB.
- predicted memory ratio: ~3.3-4x on H100 and H200 (the same bytes on both).
- time: the recompute is one more forward of every layer, ~1/3 of forward + backward's GEMM flops (attention's
  backward is ~2.5x its forward, so slightly less): ~1.25-1.33x slower, on either GPU. Declared
  ``max_slowdown=1.45``.

Measured once on an H100 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording):
2048x8x4x2048: 6.95 GiB -> 1.97 GiB, 3.53x [3.53, 3.53].
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from kernels import normal, seeded, torch_dtype
from kernels.ch13.training import config, decoder, layer_inputs, stack_backward_layerwise
from kernels.llm import Decoder
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Hidden states entering the stack and the gradient at its output (batch, seq, hidden), then the model."""
    hidden, layers, batch, seq = shape
    gen = seeded(seed)
    x = normal(gen, (batch, seq, hidden), dtype, device)
    grad_out = normal(gen, (batch, seq, hidden), dtype, device, std=(batch * seq * hidden) ** -0.5)
    model = decoder(config(hidden, layers).with_vocab(1), torch_dtype(dtype), seed, device, max_positions=seq)
    return x, grad_out, model


def _stack_grads(x: torch.Tensor, grad_out: torch.Tensor, model: Decoder,
                 checkpointed: bool) -> tuple[torch.Tensor, ...]:
    x = x.detach().requires_grad_()
    weights = list(model.layers.parameters())
    cos, sin = model.cos[:x.shape[1]], model.sin[:x.shape[1]]
    h = x
    for layer in model.layers:
        h = checkpoint(layer, h, cos, sin, use_reentrant=False) if checkpointed else layer(h, cos, sin)
    return tuple(torch.autograd.grad(h, [x, *weights], grad_out))


def baseline_keep_activations(x: torch.Tensor, grad_out: torch.Tensor, model: Decoder) -> tuple[torch.Tensor, ...]:
    """Gradients at the stack's input and of every layer weight, every activation kept for backward."""
    return _stack_grads(x, grad_out, model, checkpointed=False)


def optimized_checkpointed_layers(x: torch.Tensor, grad_out: torch.Tensor,
                                  model: Decoder) -> tuple[torch.Tensor, ...]:
    """The same gradients with each layer checkpointed: its input kept, its activations recomputed in backward."""
    return _stack_grads(x, grad_out, model, checkpointed=True)


def reference(x: torch.Tensor, grad_out: torch.Tensor, model: Decoder) -> tuple[torch.Tensor, ...]:
    """The same gradients in float64 on an exact copy of the model, written out layer by layer (one layer's
    activations in memory at a time)."""
    model = model.as_dtype(torch.float64)
    grad_in, grads = stack_backward_layerwise(model, layer_inputs(model, x)[:-1], grad_out)
    return (grad_in, *[grads[w] for w in model.layers.parameters()])


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The baseline's GEMM and attention flops, forward and backward (3x forward); the optimized arm runs the
    forward's once more. Bytes: the weights read and their gradients written once."""
    hidden, layers, batch, seq = shape
    cfg = config(hidden, layers)
    tokens = batch * seq
    matmul = 2 * layers * (cfg.params_per_layer - 2 * hidden) * tokens
    attention = layers * 2 * 2 * batch * cfg.heads * seq * seq * cfg.head_dim / 2
    return Work(bytes=float(2 * 2 * layers * cfg.params_per_layer), flops=float(3 * (matmul + attention)),
                items=float(tokens), item_name="tokens")
