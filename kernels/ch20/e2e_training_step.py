"""End-to-end training step: the fp32 eager loop vs chapter 13's training stack, every part a gated case there.

- Baseline: ``steps`` steps of the loop most scripts start from: fp32 forward and backward with cuBLAS's fp32 matmul
  precision at TF32, the next-token loss, ``clip_grad_norm_(max_norm=1.0)``, ``torch.optim.AdamW`` in its default
  (foreach) implementation, ``zero_grad()``, and the loss and gradient norm read with ``.item()`` every step to log
  them (ch13 ``bf16_autocast_training``, ``fused_adamw`` and ``sync_free_training_loop`` baselines together).
- Optimized: the same loop with the four techniques of chapter 13, each taken from its case: bf16 autocast over the
  fp32 master weights (``bf16_autocast_training``), ``AdamW(fused=True)`` (``fused_adamw``), the decoder layers and
  the loss through ``torch.compile`` (``compiled_layers_and_loss``'s compiled regions), and the metrics kept on the
  device and read once after the last step (``sync_free_training_loop``). The trace has no non-finite batch, so the
  device-side skip of that case (the fused optimizer's ``found_inf``) has nothing to skip and is left out: every
  ablation then removes exactly one technique (the foreach AdamW takes no ``found_inf``).
- Mechanism: bf16 tensor-core GEMMs and 2-byte activations, one HBM pass for the optimizer, fused elementwise chains
  and loss, and a host that never waits for the GPU inside the loop.

Ablations (``TrainingStack``: each field one technique): the optimized stack without autocast, without the fused
optimizer, without compile, and with the per-step ``.item()`` back. The seam for chapter 19's FP8 linears is
``TrainingStack.rewrite``, a function that rewrites the trained copy of the model (its MLP linears to FP8 rowwise):
adding it is one more field value and one more ablation, ``no_fp8``; this case does not depend on it.

Shape ``(hidden, layers, batch, seq, steps)``: the width picks the model (``kernels.ch13.training``). Timing shape
(2048, 4, 2, 2048, 4): four steps of four Llama-3.2-1B layers with its tied 128,256-token head (506 M parameters) on
2 x 2048 tokens, the shape of ch13's step cases (the float64 check of bf16 gradients fits beside the arms in 80 GB).

Napkin math per step on an H100 SXM (the ch13 headers' numbers):
- baseline: the TF32 step ~45-50 ms; foreach AdamW 80 B x 506 M = 40 GB, ~14 ms; clipping ~1.3 ms; two syncs ~0.5 ms:
  ~61-66 ms.
- optimized: the compiled bf16 step ~23.5-27 ms; fused AdamW 14 GB, ~5 ms; clipping ~1.3 ms: ~30-33 ms.
- the parts, each removed from the full stack: autocast ~1.4-1.6x (a compiled fp32 step ~41-46 ms), fused AdamW
  ~1.25-1.3x (+9 ms), compile ~1.15-1.25x (the eager bf16 step, +5-6 ms), sync-free ~1.0-1.03x (4,096 tokens of
  1B-wide layers keep the GPU busier than the host: little to hide). Their product, 1.65-2.6x, brackets the
  predicted 1.85-2.2x; the ablation table checks whether the measured speedup equals what its parts multiply to
  (interactions: compile fuses bf16 casts that only autocast adds).
- H200 (4.8 TB/s nominal, ~4.25 measured): the bytes-bound parts (optimizer, elementwise) shrink in both arms:
  ~1.8-2.1x.
- floor: ``min_speedup`` 1.3 (70% of 1.85x).

Precision: measured on the CPU against the float64 loop (CPU autocast runs the same bf16-operand, fp32-accumulate
GEMMs; compile in CI is Dynamo's eager backend): see the suite's ``Tolerance``. The baseline's TF32 GEMMs are
exact fp32 on the CPU.

Not yet measured on a GPU.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from kernels import seeded
from kernels.ch13 import compiled_layers_and_loss, sync_free_training_loop
from kernels.ch13.training import config, decoder, fp32_matmul_precision, step_work, token_batch
from kernels.llm import Decoder
from pytest_aiperf import Stateful, Work

reference = sync_free_training_loop.reference
reset = sync_free_training_loop.reset


@dataclass(frozen=True)
class TrainingStack:
    """Which techniques a loop runs: bf16 ``autocast``, ``fused_adamw``, ``compiled`` layers and loss, ``sync_free``
    metrics; ``rewrite`` changes the trained model copy before training (chapter 19's FP8 linears), None for none."""

    autocast: bool
    fused_adamw: bool
    compiled: bool
    sync_free: bool
    rewrite: Callable[[Decoder], Decoder] | None = None

    def without(self, technique: str) -> TrainingStack:
        return dataclasses.replace(self, **{technique: False})


EAGER_FP32 = TrainingStack(autocast=False, fused_adamw=False, compiled=False, sync_free=False)
FULL = TrainingStack(autocast=True, fused_adamw=True, compiled=True, sync_free=True)


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Token ids and labels (steps, batch, seq), loss weights (all ones: ``sync_free_training_loop``'s weighted loss,
    here the mean), and the seeded model (fp32 master weights)."""
    hidden, layers, batch, seq, steps = shape
    cfg = config(hidden, layers)
    tokens, labels = token_batch(seeded(seed), (steps, batch, seq), cfg.vocab, device)
    weights = torch.ones(steps, batch, seq, device=device)
    return tokens, labels, weights, decoder(cfg, torch.float32, seed, device, max_positions=seq)


def _setup(stack: TrainingStack, tokens: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
           model: Decoder) -> dict[str, Any]:
    trained = copy.deepcopy(model)
    if stack.rewrite is not None:
        trained = stack.rewrite(trained)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=sync_free_training_loop.LR, fused=stack.fused_adamw or None)
    return {"batches": (tokens, labels, weights), "start": model, "model": trained, "optimizer": optimizer,
            "stack": stack}


def trained(state: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """The timed loop: every step's loss and gradient norm, the skip flags (all zero), the optimizer's step count
    and the final parameters, as ``sync_free_training_loop.reference`` returns them."""
    model, optimizer, stack = state["model"], state["optimizer"], state["stack"]
    tokens, labels, _ = state["batches"]
    layer_fn, loss_fn = compiled_layers_and_loss.regions(stack.compiled)
    steps, params = tokens.shape[0], list(model.parameters())
    logs = torch.zeros(2, steps, device=tokens.device) if stack.sync_free else torch.zeros(2, steps)
    for step in range(steps):
        with fp32_matmul_precision("tf32"):
            with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=stack.autocast):
                loss = compiled_layers_and_loss.layers_and_loss(tokens[step], labels[step], model, layer_fn, loss_fn)
            loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, sync_free_training_loop.MAX_NORM)
        optimizer.step()
        optimizer.zero_grad()
        if stack.sync_free:
            logs[:, step] = torch.stack((loss.detach(), norm))
        else:
            logs[0, step], logs[1, step] = loss.item(), norm.item()
    losses, norms = logs.cpu()
    updates = next(iter(optimizer.state.values()))["step"].clone()
    return (losses, norms, torch.zeros(steps), updates, *params)


def arm(stack: TrainingStack) -> Stateful:
    """The loop of ``stack`` as a stateful arm: the model copied and the optimizer built by ``setup``, both put back
    by ``sync_free_training_loop.reset``."""
    return Stateful(setup=lambda *given: _setup(stack, *given), run=trained, reset=reset)


baseline_eager_fp32_loop = arm(EAGER_FP32)
optimized_training_stack = arm(FULL)
ABLATIONS = {f"no_{name}": arm(FULL.without(technique)) for name, technique in
             (("bf16_autocast", "autocast"), ("fused_adamw", "fused_adamw"), ("compile", "compiled"),
              ("sync_free_loop", "sync_free"))}


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """``steps`` training steps (``training.step_work`` each), GEMMs at bf16 in the optimized arm."""
    one = step_work(shape[:4], flops_at="bf16")
    steps = shape[4]
    return Work(bytes=steps * one.bytes, flops=steps * one.flops, items=steps * one.items, item_name="tokens",
                flops_at="bf16")
