"""Multi-LoRA decode: one forward per adapter group vs one base forward for the batch with per-request adapter deltas.

- Baseline: a server without a multi-LoRA kernel: the decode batch is split by adapter (the requests are already
  in adapter order, so each group is a slice: its tokens and its KV cache are views) and each group runs the whole
  model with its own unmerged LoRA on q/k/v/o, PEFT's ``result + lora_B(lora_A(x)) * scaling``: one forward per
  adapter in the batch, each reading every base weight. (PEFT's mixed-batch ``adapter_names=`` path runs the base
  once but loops over adapters inside every LoRA layer: more launches per step at 32 adapters; named, not used.)
- Optimized: one forward over the whole batch; at each LoRA target every request's A and B are gathered by its
  adapter id and applied with two ``bmm``s (the gathered-BGMV form of Punica / S-LoRA): the base weights are read
  once per step, each request's adapter rows once.
- Mechanism: the base model's weights and launches are paid once per step instead of once per adapter group.

Both arms compute each request's next-token logits under the base model plus its own adapter, one decode step over
a cached context (random keys and values of every layer); the attention is the same eager code in both (the cache
read, plus the new token's own key and value). Adapter ids are uniform over the adapters.

Shape ``(hidden, layers, batch, context, adapters, rank)``: the hidden size picks the model (64: the TINY preset for
the CPU; 2048: Llama-3.2-1B with a 32000-token vocabulary, ``kernels/ch15/serving_arms.py``), rank-``rank`` LoRA on
q/k/v/o of every layer, scaling 2 (alpha = 2 x rank). Timing shapes: (2048, 16, 64, 512, 32, 16), Llama-3.2-1B at a
decode batch of 64 with 512 cached tokens each over 32 adapters (~28 distinct in the batch expected from the uniform
draw: 32 x (1 - (31/32)^64); the workload statistic records the count), and the same with 4 adapters (all 4 present).

Napkin math on an H100 SXM (3.0 TB/s measured copy; eager launches 6-15 us of host time, ch12):
- one forward reads 2.08 GB of weights (1.95 GB of layers, 0.13 GB of LM head) and 1.07 GB of cache: ~1.05 ms of
  HBM time; it dispatches ~45 kernels per layer (norms, four projections with eight LoRA matmuls, RoPE, attention,
  MLP, residuals), ~730 in all: ~4.5-11 ms of host time. Eager decode is host-bound in both arms.
- baseline at 32 adapters: ~28 forwards: ~125-300 ms (host), ~30 ms of HBM time hidden under it; optimized: one
  forward plus ~130 gathers: ~5-12.5 ms. At 4 adapters: 4 forwards (~18-44 ms) vs one.
- predicted speedup: 32 adapters 18-28x, 4 adapters 3-4x, on H100 and H200 (host-bound: the ratio is the number
  of forwards, less the gathers). Graphed per group size (the plan's GPU-bound variant) the ratio would follow the
  bytes instead: ~28 x 2.08 GB vs 3.15 GB, ~19x at 32 adapters.
- floor: ``min_speedup`` 2.1 (70% of the lower case's low end, 3x).

Precision: both arms in bf16; the default bf16 bound holds for the logits.

Not yet measured on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from kernels import normal, seeded, torch_dtype
from kernels.ch15.serving_arms import config, served_model
from kernels.llm import Decoder
from kernels.llm.model import apply_rotary
from pytest_aiperf import Work

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
SCALING = 2.0

Delta = Callable[[int, str, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Adapters:
    """Every adapter's LoRA factors per target: ``a[t]`` (adapters, layers, rank, in), ``b[t]`` (adapters, layers,
    out, rank)."""

    a: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]

    def to(self, dtype: torch.dtype) -> Adapters:
        return Adapters({t: x.to(dtype) for t, x in self.a.items()}, {t: x.to(dtype) for t, x in self.b.items()})


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """The model, each request's new token (batch, 1), the cached keys and values (layers, batch, kv_heads,
    context, head_dim), the requests' adapter ids in adapter order, and the adapters."""
    hidden, layers, batch, context, adapters, rank = shape
    model = served_model(hidden, layers, dtype, seed, device)
    cfg, gen = model.config, seeded(seed)
    tokens = torch.randint(0, cfg.vocab, (batch, 1), generator=gen).to(device)
    cache = (layers, batch, cfg.kv_heads, context, cfg.head_dim)
    keys, values = normal(gen, cache, dtype, device), normal(gen, cache, dtype, device)
    ids = torch.randint(0, adapters, (batch,), generator=gen).sort().values.to(device)
    a, b = {}, {}
    for target in TARGETS:
        proj = getattr(model.layers[0].self_attn, target)
        fan_in, fan_out = proj.in_features, proj.out_features
        a[target] = normal(gen, (adapters, layers, rank, fan_in), dtype, device, std=fan_in**-0.5)
        b[target] = normal(gen, (adapters, layers, fan_out, rank), dtype, device,
                           std=0.125 * cfg.init_std * fan_in**0.5 / rank**0.5)
    return model, tokens, keys, values, ids, Adapters(a, b)


def decode_step(model: Decoder, tokens: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                delta: Delta) -> torch.Tensor:
    """Next-token logits (batch, vocab) of ``tokens`` at position ``context`` over the cached keys and values, with
    ``delta(layer, target, x)`` added to each q/k/v/o projection of ``x``."""
    cfg, (batch, _) = model.config, tokens.shape
    context = keys.shape[3]
    x = model.embed_tokens(tokens[:, 0])
    cos, sin = model.cos[context], model.sin[context]
    groups = cfg.heads // cfg.kv_heads
    for index, layer in enumerate(model.layers):
        attn = layer.self_attn

        def project(target: str, h: torch.Tensor) -> torch.Tensor:
            return getattr(attn, target)(h) + delta(index, target, h)

        h = layer.input_layernorm(x)
        q = project("q_proj", h).view(batch, cfg.heads, cfg.head_dim)
        k = project("k_proj", h).view(batch, cfg.kv_heads, cfg.head_dim)
        v = project("v_proj", h).view(batch, cfg.kv_heads, cfg.head_dim)
        q, k = apply_rotary(q, k, cos, sin)
        q = q.view(batch, cfg.kv_heads, groups, cfg.head_dim) * cfg.head_dim**-0.5
        cached = q @ keys[index].transpose(-1, -2)
        own = (q * k[:, :, None]).sum(-1, keepdim=True)
        probs = torch.softmax(torch.cat((cached, own), dim=-1).float(), dim=-1).to(q.dtype)
        out = probs[..., :-1] @ values[index] + probs[..., -1:] * v[:, :, None]
        x = x + project("o_proj", out.reshape(batch, cfg.heads * cfg.head_dim))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.logits(model.norm(x))


@torch.no_grad()
def baseline_forward_per_adapter(model: Decoder, tokens: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                                 ids: torch.Tensor, adapters: Adapters) -> torch.Tensor:
    """One forward per adapter group (contiguous in the batch), each with that adapter's LoRA."""
    present, counts = torch.unique_consecutive(ids, return_counts=True)
    logits, start = [], 0
    for adapter, count in zip(present.tolist(), counts.tolist()):
        rows = slice(start, start + count)

        def delta(layer: int, target: str, h: torch.Tensor, adapter: int = adapter) -> torch.Tensor:
            return F.linear(F.linear(h, adapters.a[target][adapter, layer]), adapters.b[target][adapter, layer]) \
                * SCALING

        logits.append(decode_step(model, tokens[rows], keys[:, rows], values[:, rows], delta))
        start += count
    return torch.cat(logits)


@torch.no_grad()
def optimized_batched_adapter_deltas(model: Decoder, tokens: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                                     ids: torch.Tensor, adapters: Adapters) -> torch.Tensor:
    """One forward for the batch; each request's LoRA factors gathered by its adapter id, applied by ``bmm``."""

    def delta(layer: int, target: str, h: torch.Tensor) -> torch.Tensor:
        a = adapters.a[target][:, layer][ids]
        b = adapters.b[target][:, layer][ids]
        return (torch.bmm(torch.bmm(h[:, None], a.transpose(1, 2)), b.transpose(1, 2)) * SCALING)[:, 0]

    return decode_step(model, tokens, keys, values, delta)


def reference(model: Decoder, tokens: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, ids: torch.Tensor,
              adapters: Adapters) -> torch.Tensor:
    """The per-adapter forwards in float64: the model's and the adapters' rounded weights widened."""
    wide = torch.float64
    return baseline_forward_per_adapter(model.as_dtype(wide), tokens, keys.to(wide), values.to(wide), ids,
                                        adapters.to(wide))


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """One decode step's tokens (``items``); the base weights and the cache read once (a step's floor)."""
    hidden, layers, batch, context, adapters, rank = shape
    cfg = config(hidden, layers)
    weights = layers * cfg.params_per_layer + cfg.hidden * cfg.vocab
    cache = 2 * layers * batch * cfg.kv_heads * context * cfg.head_dim
    return Work(bytes=float(torch_dtype(dtype).itemsize * (weights + cache)), items=float(batch), item_name="tokens")


def workload(model: Decoder, tokens: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, ids: torch.Tensor,
             adapters: Adapters) -> dict[str, float]:
    """How many adapter groups the batch splits into: the baseline's forwards."""
    return {"adapters_in_batch": float(torch.unique(ids).numel())}
