"""End-to-end training step: the fp32 eager loop vs the chapter 13/19 training stack, every part a gated case there.

- Baseline: ``steps`` steps of the loop most scripts start from: fp32 forward and backward with cuBLAS's fp32 matmul
  precision at TF32, the next-token loss, ``clip_grad_norm_(max_norm=1.0)``, ``torch.optim.AdamW`` in its default
  (foreach) implementation, ``zero_grad()``, and the loss and gradient norm read with ``.item()`` every step to log
  them (ch13 ``bf16_autocast_training``, ``fused_adamw`` and ``sync_free_training_loop`` baselines together).
- Optimized: the same loop with the four techniques of chapter 13, each taken from its case: bf16 autocast over the
  fp32 master weights (``bf16_autocast_training``), ``AdamW(fused=True)`` (``fused_adamw``), the decoder layers and
  the loss through ``torch.compile`` (``compiled_layers_and_loss``'s compiled regions), and the metrics kept on the
  device and read once after the last step (``sync_free_training_loop``); and chapter 19's FP8 MLP
  (``fp8_rowwise_training_mlp``): ``fp8_mlps`` rewrites the trained copy so that every layer's SwiGLU MLP runs that
  case's ``Fp8RowwiseMLP``, its forward and input-gradient GEMMs in e4m3 with rowwise scales (``torch._scaled_mm``),
  its weight gradients in bf16. The MLP's input and its three fp32 master weights are cast to bf16 as autocast casts
  a linear's operands, and the Function runs with autocast off inside. The trace has no non-finite batch, so the
  device-side skip of ``sync_free_training_loop`` (the fused optimizer's ``found_inf``) has nothing to skip and is
  left out: every ablation then removes exactly one technique (the foreach AdamW takes no ``found_inf``).
- Mechanism: bf16 tensor-core GEMMs and 2-byte activations, e4m3 tensor cores for six of each MLP's nine GEMMs, one
  HBM pass for the optimizer, fused elementwise chains and loss, and a host that never waits for the GPU inside the
  loop.

Compile and FP8: the Function's call (``fp8_swiglu``) is marked ``torch.compiler.disable``, so each compiled layer is
two graphs, the attention half with the MLP input's cast and the residual add after the MLP, with the FP8 MLP eager
between them; every layer reuses both graphs, and a second call compiles nothing (``test_end_to_end_stacks``). The
Function is kept out of the graph because Dynamo, tracing into it, reaches the quantization kernel's launch: on the
CPU it traces into Triton's interpreter and fails there (a fake-tensor error in the interpreter's pointer
arithmetic), and on the GPU it would trace a cached ``_scaled_mm`` probe and user Triton launches inside a custom
Function, never tried here. The cost: the MLP's SiLU, product and their backward run eager, unfused (as in ch19).

Ablations (``TrainingStack``: each field one technique): the optimized stack without autocast, without the fused
optimizer, without compile, with the per-step ``.item()`` back, and ``no_fp8``: ``rewrite`` None, the MLP back to
autocast's bf16 linears inside the compiled layer.

Shape ``(hidden, layers, batch, seq, steps)``: the width picks the model (``kernels.ch13.training``). Timing shape
(2048, 4, 2, 2048, 4): four steps of four Llama-3.2-1B layers with its tied 128,256-token head (506 M parameters) on
2 x 2048 tokens, the shape of ch13's step cases (the float64 check of bf16 gradients fits beside the arms in 80 GB).

Napkin math per step on an H100 SXM (the ch13 and ch19 headers' numbers):
- baseline: the TF32 step ~45-50 ms; foreach AdamW 80 B x 506 M = 40 GB, ~14 ms; clipping ~1.3 ms; two syncs ~0.5 ms:
  ~61-66 ms.
- FP8 MLP: each MLP GEMM is 2 x 4096 x 2048 x 8192 = 137 GFLOP (4,096 tokens; 2048 x 8192 weights), nine per layer;
  the forward and dgrad six of them, 3.3 TFLOP over four layers, take ~4.7-5.5 ms in bf16 (600-700 TFLOP/s) and
  ~2.4-3.3 ms in fp8 (1000-1400: K = 2048 is short): ~1.5-3 ms saved; the wgrads stay bf16. Paid back per layer, in
  bf16 bytes: quantizing x, h, the output gradient and both dgrad operands ~350 MB; the weights per output channel
  and, through transposed copies, per input channel ~500 MB (autocast's bf16 casts of them are paid in both
  stacks); the SiLU, product and backward chain eager instead of fused, +~400 MB: ~5 GB per step, ~1.7-2.3 ms at
  ~3.0 TB/s (the transposes read strided). Net -0.9 to +1.4 ms: ~0.97-1.05x. At Llama-3.2-1B's width and 4,096
  tokens a step, FP8 about breaks even (ch19's Llama-3-8B MLP over 8,192 tokens predicts 1.1-1.25x): the GEMMs are
  too small for e4m3's saving to clear the unfused quantization's bytes.
- optimized: the compiled bf16 step ~23.5-27 ms with the FP8 MLP's -0.9 to +1.4 ms; fused AdamW 14 GB, ~5 ms;
  clipping ~1.3 ms: ~28.5-34 ms.
- the parts, each removed from the full stack: autocast ~1.15-1.25x (a compiled fp32 step whose MLP stays FP8,
  ~33-40 ms), fused AdamW ~1.25-1.3x (+9 ms), compile ~1.13-1.2x (the eager bf16 step, +4.5-5.5 ms: the MLP's
  chain is eager in both), sync-free ~1.0-1.03x (4,096 tokens of 1B-wide layers keep the GPU busier than the host:
  little to hide), FP8 ~0.97-1.05x. Their product, 1.6-2.1x, falls below the predicted 1.8-2.3x: autocast and FP8
  each take the MLP's GEMMs off TF32, so removing either alone keeps them low-precision and neither ablation
  claims that ~6.5 ms; the ablation table checks the measured parts against this (compile also fuses bf16 casts
  that only autocast adds).
- H200 (4.8 TB/s nominal, ~4.25 measured): the bytes-bound parts (optimizer, elementwise, FP8's quantization) shrink
  in both arms, FP8 to ~1.0-1.07x: ~1.8-2.2x.
- floor: ``min_speedup`` 1.25 (70% of 1.8x).

Precision: measured on the CPU against the float64 loop (CPU autocast runs the same bf16-operand, fp32-accumulate
GEMMs; torch's CPU build runs the rowwise ``_scaled_mm``, so the e4m3 roundings are those of the GPU; compile in CI
is Dynamo's eager backend): see the suite's ``Tolerance``. FP8 raises the worst error eightfold, from 1.9e-3 to
1.6e-2, in a gradient norm (ch19 measured its block's gradients at ~6% per element); the losses err up to 4.1e-3 and
the weights 3.3e-3 (AdamW's first steps move each weight by about the learning rate, whatever the gradient's error).
The baseline's TF32 GEMMs are exact fp32 on the CPU.

Not yet measured on a GPU.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from torch import nn

from kernels import seeded
from kernels.ch13 import compiled_layers_and_loss, sync_free_training_loop
from kernels.ch13.training import config, decoder, fp32_matmul_precision, step_work, token_batch
from kernels.ch19.fp8_rowwise_training_mlp import Fp8RowwiseMLP
from kernels.llm import Decoder
from kernels.llm.model import MLP
from pytest_aiperf import Stateful, Work

reference = sync_free_training_loop.reference
reset = sync_free_training_loop.reset


@dataclass(frozen=True)
class TrainingStack:
    """Which techniques a loop runs: bf16 ``autocast``, ``fused_adamw``, ``compiled`` layers and loss, ``sync_free``
    metrics; ``rewrite`` changes the trained model copy before training (``fp8_mlps``), None for none."""

    autocast: bool
    fused_adamw: bool
    compiled: bool
    sync_free: bool
    rewrite: Callable[[Decoder], Decoder] | None = None

    def without(self, technique: str) -> TrainingStack:
        return dataclasses.replace(self, **{technique: None if technique == "rewrite" else False})


@torch.compiler.disable
def fp8_swiglu(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """Chapter 19's ``Fp8RowwiseMLP`` on bf16 operands, eager between a layer's compiled graphs, with autocast off
    inside it as ch19's case runs it (on a CPU without the rowwise ``_scaled_mm``, CPU autocast would round the
    emulation's dequantized fp32 operands to bf16)."""
    with torch.autocast(x.device.type, enabled=False):
        return Fp8RowwiseMLP.apply(x, w_gate, w_up, w_down)


class Fp8RowwiseSwiGLU(nn.Module):
    """A decoder layer's MLP on ``fp8_swiglu``: the same three linears (their parameters, trained in place), the
    tokens flattened and every operand cast to bf16 as autocast casts a linear's, then the e4m3 forward and dgrads
    and the bf16 wgrads of chapter 19."""

    def __init__(self, mlp: MLP) -> None:
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = mlp.gate_proj, mlp.up_proj, mlp.down_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        operands = (x.reshape(-1, x.shape[-1]), self.gate_proj.weight, self.up_proj.weight, self.down_proj.weight)
        y = fp8_swiglu(*(t.to(torch.bfloat16) for t in operands))
        return y.view(*x.shape[:-1], y.shape[-1])


def fp8_mlps(model: Decoder) -> Decoder:
    """``model`` with every layer's MLP on chapter 19's rowwise FP8 (``Fp8RowwiseSwiGLU``), in place: the parameters
    and their order unchanged."""
    for layer in model.layers:
        layer.mlp = Fp8RowwiseSwiGLU(layer.mlp)
    return model


EAGER_FP32 = TrainingStack(autocast=False, fused_adamw=False, compiled=False, sync_free=False)
FULL = TrainingStack(autocast=True, fused_adamw=True, compiled=True, sync_free=True, rewrite=fp8_mlps)


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
              ("sync_free_loop", "sync_free"), ("fp8", "rewrite"))}


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """``steps`` training steps (``training.step_work`` each), GEMMs at bf16 in the optimized arm (the MLPs' e4m3
    quarter of the flops counted at the bf16 ceiling too)."""
    one = step_work(shape[:4], flops_at="bf16")
    steps = shape[4]
    return Work(bytes=steps * one.bytes, flops=steps * one.flops, items=steps * one.items, item_name="tokens",
                flops_at="bf16")
