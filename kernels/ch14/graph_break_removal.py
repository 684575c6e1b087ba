"""Graph breaks that synchronize: a compiled training step that asks the host whether the gradients are finite and
logs ``loss.item()`` vs the same step with the skip decided on the device and the losses kept on the device.

Both arms train ``kernels.llm.Decoder`` (fp32 master weights, bf16 autocast, next-token cross-entropy,
``clip_grad_norm_``, ``torch.optim.AdamW(fused=True)``) for ``steps`` micro-batches, compiled; the second step's loss
is scaled by inf, as an overflowing loss scale or a poisoned batch would make it, so every run skips one update.

- Baseline: the whole step compiled as it is usually written, with ``if torch.isfinite(norm): opt.step()`` and
  ``return loss.item()``. Dynamo cannot trace either (a data-dependent branch, a scalar leaving the graph): each is
  a graph break at which the host waits for the GPU to drain, so the optimizer's kernels and the next step's
  launches never overlap the work queued before them.
- Optimized: the same step with those two lines rewritten and every compiled region a full graph
  (``fullgraph=True``): forward and loss; clipping, which also writes ``found_inf = ~isfinite(norm)`` on the device.
  Between them run the two calls no graph holds, neither of which waits for the GPU: ``backward()`` (the autograd
  engine running the compiled backward graph) and ``opt.step()``, whose fused AdamW kernel reads ``found_inf`` and
  skips the update and the step count on the device (the protocol GradScaler uses, ``optimizer.found_inf``; Dynamo
  does not trace fused optimizers, and ``Optimizer.step`` breaks the graph on purpose, see torch/optim/optimizer.py).
  The losses stay on the device and are stacked after the last step, so the host queues the next step while the
  GPU runs this one.

Shape ``(hidden, steps, batch, seq)``; the hidden size names the model (``kernels.ch14.config_for``). Timing shape
(576, 8, 2, 256): 8 steps of SmolLM2-135M (30 layers of 576, 9/3 heads, MLP 1536, 49152-token tied head; 134.5 M
parameters) on micro-batches of 2 x 256 tokens, the small-batch fine-tuning regime where the host is the bottleneck.
Dispatch timed (``host_dispatch="timed"``): what the host does is the lesson.

Napkin math per step (H100 SXM ~3.0 TB/s; H200 ~4.25 TB/s):
- device: forward and backward ~1,500 kernels, most of them small (GEMMs of 0.1-1 GFLOP, fused elementwise over
  512 x 576 values) at ~2-3 us each: ~4 ms; gradient clipping reads the 538 MB of fp32 gradients twice and writes
  them once: 1.6 GB = ~0.55 ms (H100) / ~0.4 ms (H200); fused AdamW reads parameters, gradients and both moments and
  writes three of them, 28 B x 134.5 M = 3.8 GB = ~1.25 ms / ~0.9 ms.
- host: Inductor's wrappers launch those ~1,500 kernels at ~4-5 us each, plus guards and the autograd engine:
  ~6.5-7.5 ms, so the step is host-bound.
- baseline: the host launches forward, backward and clipping (~7 ms; the GPU follows close behind), waits at the
  isfinite branch, launches AdamW and waits at ``.item()`` for it: ~7 + 1.25 + ~0.2 ms of restarts = ~8.5 ms (H100),
  ~8.1 ms (H200).
- optimized: the GPU's ~5.8 ms hide under the host's ~7.1 ms: ~7.1 ms.
- predicted speedup: H100 1.1-1.3x, H200 1.08-1.25x; it shrinks to nothing where the GPU, not the host, is the
  bottleneck (larger micro-batches, a slower GPU), because a sync costs only the restart of an idle GPU then.

Checked: every step's loss and every parameter after the last step, against the same steps run eagerly in float64.
Not yet measured on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import compat, seeded
from kernels.ch14 import config_for, decoder_params, load_decoder
from kernels.llm import Decoder
from pytest_aiperf import Stateful, Work

LR, BETAS, WEIGHT_DECAY, MAX_NORM = 1e-3, (0.9, 0.95), 0.1, 1.0
OVERFLOW_STEP = 1


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """Token sequences (steps, batch, seq + 1), each step's loss scale (1, inf at ``OVERFLOW_STEP``), then the
    model's fp32 master weights. ``dtype`` is the autocast compute dtype."""
    hidden, steps, batch, seq = shape
    cfg = config_for(hidden)
    tokens = torch.randint(0, cfg.vocab, (steps, batch, seq + 1), generator=seeded(seed)).to(device)
    scale = torch.ones(steps)
    scale[OVERFLOW_STEP % steps] = float("inf")
    return (tokens, scale.to(device), *decoder_params(cfg, torch.float32, seed, device))


def next_token_loss(model: Decoder, tokens: torch.Tensor, mixed: bool) -> torch.Tensor:
    """Mean cross-entropy of each position's logits against the next token; bf16 autocast where ``mixed``."""
    with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=mixed):
        logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())


def step_with_host_syncs(model: Decoder, opt: torch.optim.Optimizer, tokens: torch.Tensor, scale: torch.Tensor,
                         mixed: bool) -> float:
    loss = next_token_loss(model, tokens, mixed)
    (loss * scale).backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
    if torch.isfinite(norm):
        opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def clip_and_flag(params: list[torch.Tensor], found_inf: torch.Tensor) -> None:
    """Clip the gradients and write on the device whether their norm was non-finite."""
    norm = torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
    found_inf.copy_(torch.isfinite(norm).logical_not())


def step_skipped_on_device(state: dict[str, Any], tokens: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Two fullgraph regions (forward and loss; clipping and the flag) around the two calls no graph can hold, the
    autograd engine running the compiled backward and the fused AdamW kernel, which reads the flag."""
    loss = state["loss"](state["model"], tokens, state["mixed"])
    (loss * scale).backward()
    state["clip"](state["params"], state["found_inf"])
    state["opt"].step()
    state["opt"].zero_grad(set_to_none=True)
    return loss.detach()


def trainer(tokens: torch.Tensor, scale: torch.Tensor, params: tuple[torch.Tensor, ...],
            fused: bool) -> dict[str, Any]:
    """A model holding copies of ``params``, its AdamW (fused: the arms; the reference's default otherwise), and the
    initial weights that ``restart`` restores."""
    model = load_decoder(params, tokens.shape[-1])
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY, fused=fused or None)
    return {"model": model, "opt": opt, "tokens": tokens, "scale": scale, "initial": [p.clone() for p in params],
            "mixed": model.dtype == torch.float32}


def synced_trainer(tokens: torch.Tensor, scale: torch.Tensor, *params: torch.Tensor) -> dict[str, Any]:
    state = trainer(tokens, scale, params, fused=True)
    return {**state, "step": compat.compile(step_with_host_syncs, dynamic=False)}


def device_skip_trainer(tokens: torch.Tensor, scale: torch.Tensor, *params: torch.Tensor) -> dict[str, Any]:
    state = trainer(tokens, scale, params, fused=True)
    state["found_inf"] = torch.zeros((), dtype=torch.float32, device=tokens.device)
    state["opt"].found_inf = state["found_inf"]
    return {**state, "params": list(state["model"].parameters()),
            "loss": compat.compile(next_token_loss, fullgraph=True, dynamic=False),
            "clip": compat.compile(clip_and_flag, fullgraph=True, dynamic=False)}


@torch.no_grad()
def restart(state: dict[str, Any]) -> None:
    """Back to the initial weights and empty moments, as setup left them (AdamW's state zeroed in place, so the
    compiled step's guards keep holding)."""
    for param, initial in zip(state["model"].parameters(), state["initial"]):
        param.copy_(initial)
        param.grad = None
    for moments in state["opt"].state.values():
        for tensor in moments.values():
            tensor.zero_()


def train_with_host_syncs(state: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """Every step's loss (read on the host as it goes), then every parameter after the last step."""
    model, tokens, scale = state["model"], state["tokens"], state["scale"]
    losses = [state["step"](model, state["opt"], tokens[i], scale[i], state["mixed"]) for i in range(len(tokens))]
    return (torch.tensor(losses, dtype=torch.float32), *(p.detach() for p in model.parameters()))


def train_skipping_on_device(state: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """Every step's loss (stacked on the device after the last step), then every parameter after it."""
    model, tokens, scale = state["model"], state["tokens"], state["scale"]
    losses = [step_skipped_on_device(state, tokens[i], scale[i]) for i in range(len(tokens))]
    return (torch.stack(losses), *(p.detach() for p in model.parameters()))


def reference(tokens: torch.Tensor, scale: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The baseline's steps, eager, in the weights' dtype (float64 in the checks, without autocast)."""
    state = trainer(tokens, scale, params, fused=False)
    return train_with_host_syncs({**state, "step": step_with_host_syncs})


baseline_host_synced_step = Stateful(setup=synced_trainer, run=train_with_host_syncs, reset=restart)
optimized_device_side_skip = Stateful(setup=device_skip_trainer, run=train_skipping_on_device, reset=restart)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Per step: 6 flops per parameter per token (forward and backward); the fp32 weights read by the forward and the
    backward, the gradients written, clipped (read twice, written once) and read by AdamW with the two moments, which
    it writes back with the weights: ~48 B per parameter."""
    hidden, steps, batch, seq = shape
    cfg = config_for(hidden)
    tokens = steps * batch * seq
    return Work(bytes=float(steps * 48 * cfg.params), flops=float(6 * cfg.params * tokens), items=float(tokens),
                item_name="tokens")
