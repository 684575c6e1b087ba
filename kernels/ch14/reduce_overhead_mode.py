"""CUDA graph trees: a compiled decode step launched kernel by kernel (``torch.compile`` default mode) vs replayed as
one graph (``mode="reduce-overhead"``).

- Baseline: one greedy-decode step of ``kernels.llm.Decoder`` (a token per request at a fixed position against a
  static KV cache, HF's ``StaticCache`` idiom: ``index_copy_`` into preallocated buffers, a mask over the whole cache,
  SDPA with ``enable_gqa``), compiled in default mode. Inductor fuses the elementwise work, but its Python wrapper
  still launches each of the step's ~370 kernels from the host, and the step is bound by that dispatch.
- Optimized: the same module compiled with ``mode="reduce-overhead"``: CUDA graph trees record the step once and
  replay it, one launch for every kernel. Two rules keep the replay honest: (1) graph trees copy every input that is
  not a static address into the graph's own buffers before each replay (pytorch/pytorch#127963), so the KV cache and
  the position are state of the compiled module, marked static addresses as HF's ``StaticCache`` marks them, never
  arguments, and the new token is the only input copied; (2) the next replay overwrites the graph's outputs
  (#148439), so the arm returns a clone of the logits (one more small kernel, counted here, not in the baseline).

Shape ``(hidden, layers, batch, cache_len)``; the hidden size names the model (``kernels.ch14.config_for``). Timing
shape (896, 24, 8, 1024): the whole Qwen2.5-0.5B (hidden 896, 14/2 heads of 64, MLP 4864, q/k/v biases, tied
151936-token head) decoding one token for 8 requests at position 1024, the cache prefilled outside the timed region.
bf16, dispatch timed (``host_dispatch="timed"``: the launch path is the lesson).

Napkin math (H100 SXM ~3.0 TB/s; H200 ~4.25 TB/s):
- bytes: weights 0.99 GB (715 MB of layers, 272 MB of tied LM head) + KV cache 2 x 24 x 8 x 128 x 1025 x 2 B =
  101 MB: ~0.36 ms (H100) / ~0.26 ms (H200) at the copy ceiling.
- kernels: per layer ~15 after fusion (norm, three biased projections, RoPE, two cache writes, attention, output
  projection, residual and norm, gate and up projections, SiLU product, down projection), ~370 per step with the head.
  ch12's measured replay of a 1,065-kernel step spent ~2.9 us per kernel, so the replayed step is ~0.8-1.1 ms
  (H100), a little less on the H200.
- default mode: Inductor's wrapper spends ~4-6 us of host time per launch plus guard checks on ~290 parameters:
  ~1.6-2.4 ms per step, which the GPU waits for.
- predicted speedup: H100 1.6-3x, H200 1.7-3.2x (the same host, a faster memory system under the replay).

Checked: the next-token logits against the eager step in float64 (the step attends to the position it writes, so a
cache write to the wrong slot changes them). Compilation is the first call, timed apart; graph trees record on the
second, in the warm-up before the samples, which run under ``fail_on_recompile``. Not yet measured on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kernels import compat, seeded, torch_dtype
from kernels.ch14 import config_for, decoder_params, load_decoder
from kernels.llm import Decoder, KVCache
from pytest_aiperf import Stateful, Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """The prompts (batch, cache_len) whose keys and values fill the cache, the new tokens (batch, 1), then the
    model's parameters."""
    hidden, layers, batch, cache_len = shape
    cfg = config_for(hidden).with_layers(layers)
    gen = seeded(seed)
    prompt = torch.randint(0, cfg.vocab, (batch, cache_len), generator=gen).to(device)
    token = torch.randint(0, cfg.vocab, (batch, 1), generator=gen).to(device)
    return (prompt, token, *decoder_params(cfg, torch_dtype(dtype), seed, device))


class DecodeStep(nn.Module):
    """One decode step of ``model`` at the fixed position ``pos`` against ``cache``. The cache's tensors and the
    position are state of this module, marked static addresses (unguarded: another cache of the same shapes needs no
    recompile), so a compiled step reads them in place and takes only the new tokens as input."""

    def __init__(self, model: Decoder, cache: KVCache, pos: torch.Tensor) -> None:
        super().__init__()
        self.model, self.cache = model, cache
        self.register_buffer("pos", pos, persistent=False)
        for tensor in (*cache.keys, *cache.values, pos):
            torch._dynamo.mark_static_address(tensor, guard=False)

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        return self.model.decode(token, self.cache, self.pos)


@torch.no_grad()
def prefilled(prompt: torch.Tensor, token: torch.Tensor, *params: torch.Tensor) -> tuple[DecodeStep, torch.Tensor]:
    """The step module over a cache of cache_len + 1 positions whose first cache_len an eager prefill of the
    prompts filled, and the new tokens."""
    model = load_decoder(params, prompt.shape[1] + 1).requires_grad_(False)
    cache = KVCache(model.config, prompt.shape[0], prompt.shape[1] + 1, model.dtype, model.device)
    model.prefill(prompt, cache, 0)
    return DecodeStep(model, cache, torch.tensor(prompt.shape[1], device=prompt.device)), token


def default_mode_step(prompt: torch.Tensor, token: torch.Tensor, *params: torch.Tensor) -> tuple[Any, ...]:
    step, token = prefilled(prompt, token, *params)
    return step, compat.compile(step, dynamic=False), token


def reduce_overhead_step(prompt: torch.Tensor, token: torch.Tensor, *params: torch.Tensor) -> tuple[Any, ...]:
    step, token = prefilled(prompt, token, *params)
    return step, compat.compile(step, mode="reduce-overhead", dynamic=False), token


def clear_written_position(state: tuple[Any, ...]) -> None:
    """Zero the cache position the step writes, as ``prefilled`` left it (the step writes it before reading it, so
    this changes no output: it only keeps the state what setup made)."""
    step = state[0]
    with torch.no_grad():
        for tensor in (*step.cache.keys, *step.cache.values):
            tensor[:, :, -1].zero_()


@torch.no_grad()
def launched_step(state: tuple[Any, ...]) -> torch.Tensor:
    """The compiled step in default mode: the next-token logits (batch, vocab)."""
    _, compiled, token = state
    return compiled(token)


@torch.no_grad()
def replayed_step(state: tuple[Any, ...]) -> torch.Tensor:
    """The step replayed by CUDA graph trees (each call without a pending backward starts a new generation, as
    ``torch.compiler.cudagraph_mark_step_begin``'s documentation says): the logits are cloned out of the graph's
    output buffer before the next replay overwrites it."""
    _, compiled, token = state
    return compiled(token).clone()


def reference(prompt: torch.Tensor, token: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """The eager step in the parameters' dtype (float64 in the checks)."""
    step, token = prefilled(prompt, token, *params)
    with torch.no_grad():
        return step(token)


baseline_compiled_default_mode = Stateful(setup=default_mode_step, run=launched_step, reset=clear_written_position)
optimized_cuda_graph_trees = Stateful(setup=reduce_overhead_step, run=replayed_step, reset=clear_written_position)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Every weight read once (the embedding only for the new tokens' rows) and the whole cache read once; 2 flops
    per multiply-add of the projections, the head and attention over cache_len + 1 keys."""
    hidden, layers, batch, cache_len = shape
    cfg = config_for(hidden).with_layers(layers)
    weights = layers * cfg.params_per_layer + cfg.hidden + cfg.vocab * cfg.hidden
    cache = 2 * layers * batch * cfg.kv_width * (cache_len + 1)
    flops = 2 * batch * (weights + 2 * layers * cfg.q_width * (cache_len + 1))
    return Work(bytes=float(torch_dtype(dtype).itemsize * (weights + cache)), flops=float(flops),
                items=float(batch), item_name="tokens")
