"""Sync-free training loop: a training loop that reads its loss and gradient norm on the host every step vs one that
keeps its metrics on the device and skips a bad step there.

Both arms run the same loop of ``steps`` steps on the same seeded batches: bf16 autocast over fp32 master weights,
the weighted next-token loss, ``loss.backward()``, ``clip_grad_norm_(max_norm=1.0)``, ``AdamW(lr=2e-4,
fused=True)`` and ``zero_grad()``. One batch is corrupt (a NaN in its loss weights, standing in for any batch whose
gradient overflows): its non-finite gradient norm must skip that step, leaving parameters, moments and step count
as they were, and its loss is not logged.

- Baseline: the loop most training scripts write: ``if not math.isfinite(grad_norm.item())`` skips the step on the
  host, and ``loss.item()`` logs each step's loss: two host syncs per step. Each drains the GPU's queue, so the
  host cannot dispatch the optimizer step and the next forward while the GPU still runs the backward: the GPU idles
  while the host dispatches, once per sync.
- Optimized: no sync in the loop. The skip is decided on the device, as ``GradScaler`` does it for fused
  optimizers: ``found_inf = ~isfinite(grad_norm)`` is handed to the fused AdamW (its ``found_inf`` attribute, which
  the fused kernel reads: it leaves everything untouched and takes the step count back); loss, norm and skip flag
  are written into device tensors with ``torch.where``, and read on the host once, after the last step, as a
  logger reading them at its interval would.

Both arms are ``Stateful``: ``setup`` copies the model and builds the optimizer; ``reset`` copies the starting
weights back and empties the optimizer's state, outside the timed region. Each returns the logged losses, gradient
norms and skip flags of every step, the optimizer's step count (the updates it applied) and the final parameters.

Shape ``(hidden, layers, batch, seq, steps)``: the width picks the model (``kernels.ch13.training``). Timing shape
(896, 24, 4, 512, 10): ten steps of the whole Qwen2.5-0.5B (494 M parameters, tied 151,936-token head) on 4 x 512
tokens each.

Napkin math on an H100 SXM, one step (device time G, host dispatch time C):
- device: 6 x 494 M x 2048 = 6.1 TFLOP at ~450-600 TFLOP/s (K = 896 is short for the tensor cores) = 10-13.5 ms;
  elementwise and loss ~5 ms; clipping ~2 ms (grads read, then scaled); the fused step 494 M x 28 B = 13.8 GB =
  ~5 ms. G ~ 22-26 ms.
- host: forward ~24 x 50 ops at ~15 us (Python, autocast) = ~18 ms; backward ~24 x 100 kernels at ~5 us (the C++
  autograd engine) = ~12 ms; clipping, optimizer and zero_grad over 290 tensors ~2 ms. C ~ 32 ms: host-bound.
- baseline: the forward and backward go at the host's pace (~30 ms); the norm's sync waits for the backward's
  tail and the clipping (~2-4 ms); the optimizer's ~5 ms and the loss's sync follow, and only then is the next
  forward dispatched: ~38-42 ms.
- optimized: the next forward is dispatched while the GPU still runs clipping and the optimizer: ~max(C, G) =
  ~32-34 ms.
- predicted speedup: ~1.1-1.3x on H100, the same on H200 (set by the host's dispatch rate, which
  ``host_dispatch="timed"`` keeps in the measurement).

Precision: both arms run the same bf16 autocast step, so the checker's bf16 rule applies; the float64 reference
runs the loop with float64 weights, AdamW and clipping, one layer's activations at a time. The learning rate is a
fine-tuning rate, 2e-4: at AdamW's default 1e-3 the residual-branch output projections (initialized 1/sqrt(2 x
layers) smaller) move ~20% a step, and the bf16 noise in their updates reached 2.8e-2 of the final weights after ten
steps at TINY width and 24 layers (CPU, against float64), near the bf16 bound; at 2e-4 it was 3.6e-3, and 3.8e-3
for two Qwen2.5-0.5B layers over four steps.

ch14's ``graph_break_removal`` makes the same move inside ``torch.compile``, where the syncs are also graph breaks.

Not yet measured on a GPU.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F

from kernels import seeded
from kernels.ch13.training import config, decoder, layerwise_grads, token_batch
from kernels.llm import Decoder
from pytest_aiperf import Stateful

MAX_NORM = 1.0
LR = 2e-4


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Token ids and labels (steps, batch, seq), loss weights (steps, batch, seq) with one NaN in the middle step,
    and the seeded model (fp32 master weights)."""
    hidden, layers, batch, seq, steps = shape
    cfg = config(hidden, layers)
    tokens, labels = token_batch(seeded(seed), (steps, batch, seq), cfg.vocab, device)
    weights = torch.ones(steps, batch, seq)
    weights[steps // 2, 0, 0] = float("nan")
    return tokens, labels, weights.to(device), decoder(cfg, torch.float32, seed, device, max_positions=seq)


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-token next-token cross-entropy (fp32 logits), weighted and normalized by the weights' sum."""
    losses = F.cross_entropy(logits.float().flatten(0, -2), labels.flatten(), reduction="none")
    return (losses * weights.flatten()).sum() / weights.sum()


def _setup(tokens: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, model: Decoder) -> dict[str, Any]:
    trained = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=LR, fused=True)
    return {"batches": (tokens, labels, weights), "start": model, "model": trained, "optimizer": optimizer}


@torch.no_grad()
def reset(state: dict[str, Any]) -> None:
    """The starting weights copied back, the optimizer's moments and step counts dropped."""
    for param, start in zip(state["model"].parameters(), state["start"].parameters()):
        param.copy_(start)
        param.grad = None
    state["optimizer"].state.clear()


def _loss_and_backward(model: Decoder, tokens: torch.Tensor, labels: torch.Tensor,
                       weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.autocast(tokens.device.type, dtype=torch.bfloat16):
        loss = weighted_loss(model(tokens), labels, weights)
    loss.backward()
    return loss.detach(), torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)


def _updates(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """The updates the optimizer applied: its step count (the same for every parameter)."""
    return next(iter(optimizer.state.values()))["step"].clone()


def host_synced_loop(state: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """The loop with ``.item()`` on the gradient norm (skip decision) and the loss (log) every step."""
    model, optimizer = state["model"], state["optimizer"]
    tokens, labels, weights = state["batches"]
    logged = []
    for step in range(tokens.shape[0]):
        loss, norm = _loss_and_backward(model, tokens[step], labels[step], weights[step])
        grad_norm = norm.item()
        if not math.isfinite(grad_norm):
            optimizer.zero_grad()
            logged.append((0.0, 0.0, 1.0))
            continue
        optimizer.step()
        optimizer.zero_grad()
        logged.append((loss.item(), grad_norm, 0.0))
    return (*torch.tensor(logged).T, _updates(optimizer), *model.parameters())


def device_side_loop(state: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """The same loop with the skip decided by the fused optimizer on the device and the metrics kept there."""
    model, optimizer = state["model"], state["optimizer"]
    tokens, labels, weights = state["batches"]
    logs = torch.zeros(3, tokens.shape[0], device=tokens.device)
    for step in range(tokens.shape[0]):
        loss, norm = _loss_and_backward(model, tokens[step], labels[step], weights[step])
        found_inf = (~torch.isfinite(norm)).float()
        optimizer.found_inf = found_inf
        optimizer.step()
        del optimizer.found_inf
        optimizer.zero_grad()
        ok = found_inf == 0
        logs[:, step] = torch.stack((torch.where(ok, loss, 0.0), torch.where(ok, norm, 0.0), found_inf))
    losses, norms, skipped = logs.cpu()
    return (losses, norms, skipped, _updates(optimizer), *model.parameters())


baseline_host_synced_loop = Stateful(setup=_setup, run=host_synced_loop, reset=reset)
optimized_device_side_loop = Stateful(setup=_setup, run=device_side_loop, reset=reset)


def reference(tokens: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
              model: Decoder) -> tuple[torch.Tensor, ...]:
    """The loop in float64: float64 weights, loss, clipping (written out) and AdamW, no autocast."""
    model = model.as_dtype(torch.float64)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=LR)
    logs = torch.zeros(3, tokens.shape[0], dtype=torch.float64)
    for step in range(tokens.shape[0]):
        loss, grads = layerwise_grads(model, tokens[step],
                                      lambda logits: weighted_loss(logits, labels[step], weights[step]))
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if not torch.isfinite(norm):
            logs[2, step] = 1.0
            continue
        for param, grad in zip(params, grads):
            param.grad = grad * torch.clamp(MAX_NORM / (norm + 1e-6), max=1.0)
        optimizer.step()
        optimizer.zero_grad()
        logs[0, step], logs[1, step] = loss, norm
    return (*logs, _updates(optimizer), *params)
