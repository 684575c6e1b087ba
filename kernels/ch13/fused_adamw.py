"""Fused AdamW: ``torch.optim.AdamW``'s default multi-tensor (foreach) step vs ``AdamW(fused=True)``.

- Baseline: ``torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)`` (Llama 3's settings),
  otherwise its defaults. On CUDA the default implementation is foreach: each line of the update is one
  ``torch._foreach_*`` op over every tensor (weight decay ``mul_``, ``lerp_`` of the first moment, ``mul_`` and
  ``addcmul_`` of the second, ``sqrt``, ``div_`` and ``add_`` of the denominator, ``addcdiv_`` into the
  parameters), so every op is one more pass over its tensors in HBM. Bias corrections are computed on the host from
  CPU step counters.
- Optimized: the same with ``fused=True``: one kernel reads each element's parameter, gradient and two moments
  once, applies the whole update in registers, and writes parameter and moments once; step counters live on the
  device.

Both arms are ``Stateful``: the optimizer resumes at step 100 from the moments in the inputs (``setup`` copies the
parameters and moments, and loads them through ``load_state_dict`` so each implementation keeps its step counters
where it wants them); the timed call is one ``step()``, and ``reset`` copies the inputs back in place, outside the
timed region. Each returns the updated parameters and both moments.

Shape ``(hidden, layers)``: the parameter tensors of that many decoder layers of the preset ``hidden`` wide
(``kernels.ch13.training``), plus its final norm. Timing shape (896, 24): every decoder-layer parameter of
Qwen2.5-0.5B, 289 tensors from 128 (k/v biases) to 4.36 M elements (MLP projections), 357.9 M fp32 parameters.
The tied embedding (136 M) is left out so that the float64 check at the timing shape fits in 80 GB beside both
arms' states.

Napkin math on an H100 SXM (fp32; copy ceiling ~3.0 TB/s measured):
- minimum traffic: read p, g, m, v and write p, m, v = 28 B/param x 357.9 M = 10.0 GB.
- optimized: one pass, ~10.0 GB at ~2.5-2.8 TB/s (80-93% of the copy ceiling) = ~3.6-4.0 ms.
- baseline: mul_ 8 + lerp_ 12 + mul_ 8 + addcmul_ 12 + sqrt 8 + div_ 8 + add_ 8 + addcdiv_ 16 = 80 B/param =
  28.6 GB at ~2.6-2.8 TB/s = ~10.2-11.0 ms; ~140 multi-tensor launches (8 ops over ~17 launches each) and the
  host's bias corrections overlap the device work.
- predicted speedup: ~2.5-3.0x (80/28 = 2.86 at equal bandwidth) on H100; the same on H200 (4.25 TB/s copy
  ceiling: ~2.5 ms vs ~7 ms). The fused arm should reach at least 80% of the copy ceiling.

Measured once on an H100 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording): 896x24:
12.2 ms -> 4.9 ms, 2.48x [2.28, 2.59].
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import normal, seeded
from kernels.ch13.training import config
from kernels.llm.weights import parameter_draws
from pytest_aiperf import Stateful, Work

RESUME_STEP = 100
GRAD_STD = 1e-3
SETTINGS = {"lr": 3e-4, "betas": (0.9, 0.95), "weight_decay": 0.1}


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """Parameters (drawn as ``kernels.llm.weights`` draws them), then gradients, first moments and second moments,
    one tensor per parameter in each group: a step of training in progress."""
    hidden, layers = shape
    cfg = config(hidden, layers)
    shapes = [(size, mean, std) for name, size, mean, std in parameter_draws(cfg)
              if name.startswith("layers.") or name == "norm.weight"]
    gen = seeded(seed)
    params = [normal(gen, size, dtype, device, std=std) + mean for size, mean, std in shapes]
    grads = [normal(gen, size, dtype, device, std=GRAD_STD) for size, _, _ in shapes]
    exp_avgs = [normal(gen, size, dtype, device, std=0.3 * GRAD_STD) for size, _, _ in shapes]
    exp_avg_sqs = [normal(gen, size, dtype, device, std=GRAD_STD).square_().add_(0.1 * GRAD_STD**2)
                   for size, _, _ in shapes]
    return (*params, *grads, *exp_avgs, *exp_avg_sqs)


def _groups(tensors: tuple[torch.Tensor, ...]) -> list[tuple[torch.Tensor, ...]]:
    count = len(tensors) // 4
    return [tensors[i * count:(i + 1) * count] for i in range(4)]


def _setup(fused: bool, *tensors: torch.Tensor) -> tuple[Any, ...]:
    start, grads, exp_avgs, exp_avg_sqs = _groups(tensors)
    params = [torch.nn.Parameter(p.clone()) for p in start]
    for param, grad in zip(params, grads):
        param.grad = grad
    optimizer = torch.optim.AdamW(params, **SETTINGS, fused=True) if fused else torch.optim.AdamW(params, **SETTINGS)
    state = {i: {"step": torch.tensor(float(RESUME_STEP)), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
             for i, (m, v) in enumerate(zip(exp_avgs, exp_avg_sqs))}
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    return optimizer, params, tensors


@torch.no_grad()
def reset(state: tuple[Any, ...]) -> None:
    """Parameters and moments back to the inputs' values, step counters back to 100, in place."""
    optimizer, params, tensors = state
    start, _, exp_avgs, exp_avg_sqs = _groups(tensors)
    for param, p, m, v in zip(params, start, exp_avgs, exp_avg_sqs):
        slot = optimizer.state[param]
        param.copy_(p)
        slot["exp_avg"].copy_(m)
        slot["exp_avg_sq"].copy_(v)
        slot["step"].fill_(RESUME_STEP)


def _step(state: tuple[Any, ...]) -> tuple[torch.Tensor, ...]:
    optimizer, params, _ = state
    optimizer.step()
    slots = [optimizer.state[p] for p in params]
    return (*params, *[s["exp_avg"] for s in slots], *[s["exp_avg_sq"] for s in slots])


def _setup_foreach(*tensors: torch.Tensor) -> tuple[Any, ...]:
    return _setup(False, *tensors)


def _setup_fused(*tensors: torch.Tensor) -> tuple[Any, ...]:
    return _setup(True, *tensors)


def foreach_adamw_step(state: tuple[Any, ...]) -> tuple[torch.Tensor, ...]:
    """One step of the default (foreach) AdamW; the parameters, first moments and second moments after it."""
    return _step(state)


def fused_adamw_step(state: tuple[Any, ...]) -> tuple[torch.Tensor, ...]:
    """One step of the fused AdamW; the parameters, first moments and second moments after it."""
    return _step(state)


baseline_foreach_adamw = Stateful(setup=_setup_foreach, run=foreach_adamw_step, reset=reset)
optimized_fused_adamw = Stateful(setup=_setup_fused, run=fused_adamw_step, reset=reset)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The fused minimum: each parameter's value, gradient and two moments read once, value and moments written
    once (28 B per fp32 parameter)."""
    hidden, layers = shape
    count = config(hidden, layers).params_per_layer * layers + hidden
    return Work(bytes=float(28 * count), flops=0.0, items=float(count), item_name="params")
