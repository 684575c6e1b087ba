"""Selective activation checkpointing: every decoder layer fully checkpointed (its whole forward recomputed in
backward) vs checkpointed with a policy that keeps the matmul and attention outputs and recomputes only the cheap
pointwise ops (torchtitan's selective AC).

- Baseline: chapter 13's optimized arm, ``torch.utils.checkpoint.checkpoint(layer, x, cos, sin,
  use_reentrant=False)`` per layer (Hugging Face's ``gradient_checkpointing_enable()``): the backward of each layer
  first reruns its forward, seven projections and attention included.
- Optimized: the same call with ``context_fn`` from ``create_selective_checkpoint_contexts`` and a policy that
  answers MUST_SAVE for ``aten.mm``/``addmm``/``bmm`` and the SDPA kernels (flash, efficient, cuDNN, CPU flash) and
  PREFER_RECOMPUTE for everything else: the recompute reruns the RMSNorms, RoPE, SiLU and the products, and reuses
  the saved GEMM and attention outputs. Both arms run the same ops on the same data; only what is kept differs.

Shape ``(hidden, layers, batch, seq)``, as chapter 13's ``activation_checkpointing``. Timing shape (2048, 8, 4,
2048): eight Llama-3.2-1B layers on 4 x 2048 tokens (the reason for eight, not sixteen, is in that module).

Napkin math (bf16; H100 SXM ~600-700 TFLOP/s on these GEMMs, copy ~3.0 TB/s; per layer and 8192 tokens):
- GEMMs: 2 x 8192 x 60.8 M weights = 1.0 TFLOP forward; causal attention 2 x 2 x 4 x 32 x 2048^2 x 64 / 2 = 0.14
  TFLOP forward. Forward + backward ~3.4 TFLOP; full AC adds one forward: ~4.5 TFLOP: ~6.6-7.5 ms per layer.
- selective AC adds the pointwise recompute: the two RMSNorms (fp32 inside, ~20 B per element over 8192 x 2048),
  RoPE on q and k, SiLU and the product over 8192 x 8192: ~2 GB moved, ~0.7 ms: ~5.6-6.4 ms per layer.
- predicted speedup: 1.12-1.25x on H100 and H200 (the same GEMM peak; H200's bandwidth makes the recompute cheaper).
- memory: the saved q, k, v, attention output and log-sum-exp, o, gate, up and down outputs, ~0.37 GB per layer,
  3 GB for eight, against full AC's 0.27 GB of layer inputs: a peak of ~5-6 GB against ~2.4-3 GB, 1.7-2.5x (and
  ~10 GB keeping everything, 3.3-4.2x). The case's ceiling, ``max_memory_growth`` 2.8x of the full-AC peak, fails a
  "selective" policy that saves nearly everything.

Precision: both arms compute the same bf16 gradients (the saved outputs are the values the recompute would give
bitwise on the same device); the default bf16 bound holds.

Measured once on an H200 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording):
2048x8x4x2048: 79 ms -> 80.5 ms, 0.98x [0.92, 1.03], below its floor. Peak
memory 2.11 -> 4.44 GB (2.10x, inside the 2.8x ceiling, as predicted). The time is far from the predicted
1.12-1.25x and not yet explained: the next step is a profile of one step's backward (does the policy keep the
GEMMs out of the recompute on torch 2.11's CUDA path, as it does on the CPU, where the tests count them?).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from kernels.ch13.activation_checkpointing import inputs, reference, work
from kernels.llm import Decoder

__all__ = ["SAVED_OPS", "baseline_full_checkpointing", "inputs", "optimized_selective_checkpointing", "reference",
           "save_matmuls_and_attention", "work"]

_aten = torch.ops.aten
SAVED_OPS = frozenset(getattr(_aten, name).default for name in (
    "mm", "addmm", "bmm", "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu") if hasattr(_aten, name))


def save_matmuls_and_attention(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    """The selective policy: keep what a matmul or an attention kernel returns, recompute the rest."""
    return CheckpointPolicy.MUST_SAVE if op in SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def selective_context() -> Any:
    """The checkpoint's forward and recompute contexts under ``save_matmuls_and_attention``."""
    return create_selective_checkpoint_contexts(save_matmuls_and_attention)


def _stack_grads(x: torch.Tensor, grad_out: torch.Tensor, model: Decoder, **checkpoint_kwargs: Any):
    x = x.detach().requires_grad_()
    weights = list(model.layers.parameters())
    cos, sin = model.cos[:x.shape[1]], model.sin[:x.shape[1]]
    h = x
    for layer in model.layers:
        h = checkpoint(layer, h, cos, sin, use_reentrant=False, **checkpoint_kwargs)
    return tuple(torch.autograd.grad(h, [x, *weights], grad_out))


def baseline_full_checkpointing(x: torch.Tensor, grad_out: torch.Tensor, model: Decoder) -> tuple[torch.Tensor, ...]:
    """Gradients at the stack's input and of every layer weight, each layer's whole forward recomputed."""
    return _stack_grads(x, grad_out, model)


def optimized_selective_checkpointing(x: torch.Tensor, grad_out: torch.Tensor,
                                      model: Decoder) -> tuple[torch.Tensor, ...]:
    """The same gradients, each layer's matmul and attention outputs kept and only its pointwise ops recomputed."""
    return _stack_grads(x, grad_out, model, context_fn=selective_context)
