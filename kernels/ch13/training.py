"""What the chapter's training cases share: the model a shape names, seeded token batches, the causal LM loss as
Hugging Face computes it, a float64 reference that keeps one layer's activations at a time, and the fp32 matmul
precision set for one call.

A case's shape starts with the model's hidden size, which picks the published preset of ``kernels.llm`` (64 TINY for
the CPU checks, 896 Qwen2.5-0.5B, 2048 Llama-3.2-1B, 4096 Llama-3-8B), then its layer count: (2048, 4, ...) is four
Llama-3.2-1B layers.

The float64 reference runs on the GPU at the timing shape too (the plugin checks the timing inputs once before
timing). Without flash attention (no float64 kernel) SDPA materializes every (query, key) score, 8 B each, and a
plain float64 backward would keep them for every layer: 4 x 32 x 2048^2 x 8 B = 4.3 GB per Llama-3.2-1B layer at
4 x 2048 tokens. ``layerwise_grads`` keeps only each layer's input and recomputes one layer at a time, as
checkpointing does, but written out by hand so that it shares no code with the checkpointed arm it checks.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from kernels.llm import LLAMA_3_2_1B, LLAMA_3_8B, QWEN2_5_0_5B, TINY, Decoder, LlamaConfig
from pytest_aiperf import Work

PRESETS = {cfg.hidden: cfg for cfg in (TINY, QWEN2_5_0_5B, LLAMA_3_2_1B, LLAMA_3_8B)}


def config(hidden: int, layers: int) -> LlamaConfig:
    """The preset ``hidden`` wide, with ``layers`` decoder layers."""
    if hidden not in PRESETS:
        raise ValueError(f"no model preset is {hidden} wide; known widths: {', '.join(map(str, PRESETS))}")
    return PRESETS[hidden].with_layers(layers)


def decoder(cfg: LlamaConfig, dtype: torch.dtype, seed: int, device: Any, max_positions: int) -> Decoder:
    """A seeded ``Decoder`` of ``cfg``: weights drawn on the CPU and copied, the same values on every device."""
    return Decoder(cfg, dtype=dtype, device=device, seed=seed, max_positions=max_positions)


def token_batch(gen: torch.Generator, shape: tuple[int, ...], vocab: int,
                device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``shape`` (..., seq) and their labels, the same stream shifted by one (next-token prediction)."""
    ids = torch.randint(vocab, (*shape[:-1], shape[-1] + 1), generator=gen)
    return ids[..., :-1].contiguous().to(device), ids[..., 1:].contiguous().to(device)


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over every position, on logits upcast to fp32 (Hugging Face's
    ``ForCausalLMLoss``)."""
    return F.cross_entropy(logits.float().flatten(0, -2), labels.flatten())


def causal_lm_loss(model: Decoder, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``next_token_loss`` of the model's logits over ``tokens``."""
    return next_token_loss(model(tokens), labels)


def parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The model's parameters in ``named_parameters`` order, a tied weight once."""
    return list(model.parameters())


@contextlib.contextmanager
def fp32_matmul_precision(precision: str) -> Iterator[None]:
    """cuBLAS's fp32 matmul precision (``"tf32"`` or ``"ieee"``) for one call, restored after it (the new API only:
    mixing it with ``allow_tf32`` raises in torch). A no-op for float64 and for the CPU."""
    matmul = torch.backends.cuda.matmul
    previous = matmul.fp32_precision
    matmul.fp32_precision = precision
    try:
        yield
    finally:
        matmul.fp32_precision = previous


def stack_backward_layerwise(model: Decoder, inputs: Sequence[torch.Tensor],
                             grad_out: torch.Tensor) -> tuple[torch.Tensor, dict[torch.Tensor, torch.Tensor]]:
    """Backward through the layers, last first, given each layer's input (from a no-grad forward) and the gradient
    at the last layer's output: the gradient at the first layer's input, and each layer parameter's gradient."""
    cos, sin = model.cos[:grad_out.shape[1]], model.sin[:grad_out.shape[1]]
    grads: dict[torch.Tensor, torch.Tensor] = {}
    for layer, x in zip(reversed(model.layers), reversed(inputs)):
        x = x.detach().requires_grad_()
        weights = list(layer.parameters())
        grad_out, *found = torch.autograd.grad(layer(x, cos, sin), [x, *weights], grad_out)
        grads.update(zip(weights, found))
    return grad_out, grads


@torch.no_grad()
def layer_inputs(model: Decoder, x: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's input and, last, the stack's output, from one forward without autograd."""
    cos, sin = model.cos[:x.shape[1]], model.sin[:x.shape[1]]
    states = [x]
    for layer in model.layers:
        states.append(layer(states[-1], cos, sin))
    return states


def layerwise_grads(model: Decoder, tokens: torch.Tensor,
                    loss_of_logits: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A loss of the model's logits over ``tokens`` and its gradient for every parameter (``parameters`` order),
    one layer's activations in memory at a time."""
    states = layer_inputs(model, model.embed_tokens(tokens).detach())
    top = states.pop().requires_grad_()
    head = [model.norm.weight, model.lm_head.weight]
    loss = loss_of_logits(model.logits(model.norm(top)))
    grad_top, *head_grads = torch.autograd.grad(loss, [top, *head])
    grad_embedded, grads = stack_backward_layerwise(model, states, grad_top)
    embed = model.embed_tokens.weight
    (embed_grad,) = torch.autograd.grad(model.embed_tokens(tokens), [embed], grad_embedded)
    for weight, grad in (*zip(head, head_grads), (embed, embed_grad)):
        grads[weight] = grads[weight] + grad if weight in grads else grad
    return loss.detach(), [grads[p] for p in parameters(model)]


def step_work(shape: tuple[int, ...], flops_at: str = "") -> Work:
    """One training step of the model ``(hidden, layers, batch, seq)`` names: the GEMM and causal-attention flops
    of forward and backward (3x the forward's), and the fp32 weights read and gradients written once."""
    hidden, layers, batch, seq = shape
    cfg = config(hidden, layers)
    tokens = batch * seq
    matmul_params = layers * (cfg.params_per_layer - 2 * hidden) + cfg.vocab * hidden
    attention = layers * 2 * 2 * batch * cfg.heads * seq * seq * cfg.head_dim / 2
    return Work(bytes=float(2 * 4 * cfg.params), flops=float(3 * (2 * matmul_params * tokens + attention)),
                items=float(tokens), item_name="tokens", flops_at=flops_at)
