"""End-to-end decode latency at batch 1: eager ``greedy_generate`` vs chapter 14's lowest-latency decode stack.

- Baseline: ``kernels.llm.greedy_generate``, Hugging Face's eager ``generate`` with a static cache: prefill the prompt,
  then one eager decode step per token, each slicing the cache's live prefix, ~15 kernels per layer launched from
  Python.
- Optimized: the same prefill, then ch14's ``DecodeStep`` (the cache and the position are static-address state of the
  module, every step the same shapes: the whole cache behind a mask) compiled with ``mode="reduce-overhead"``
  (``reduce_overhead_mode``'s optimized arm): Inductor's fused kernels replayed by CUDA graph trees, one launch per
  token; the position advances in place between replays. On the CPU (CI) the compile backend is Dynamo's eager one
  and there are no graphs: the same function, checked.
- Mechanism: per token, the host's ~2-4 ms of kernel-by-kernel dispatch becomes one graph launch, and the fused step
  moves fewer bytes between its GEMMs.

Ablations (``DecodeStack``): without CUDA graphs (the compiled step in default mode, ch14's baseline there), and
without compile (the eager static step captured into a CUDA graph by hand with ch12's ``capture``, as
``cuda_graph_replay`` does; eager on the CPU). The static cache is the precondition of both, not a part that can be
taken out alone: a step whose shapes change every token neither replays nor compiles once.

Shape ``(hidden, layers, prompt_len, new_tokens)``; the hidden size names the model (``kernels.ch14.config_for``).
Timing shape (2048, 16, 512, 128): the whole Llama-3.2-1B (1.24 B parameters with its tied 128,256-token head), a
512-token prompt, 128 generated tokens at batch 1, bf16; dispatch timed (``host_dispatch="timed"``).

Napkin math per token (H100 SXM, ~3.0 TB/s copy ceiling; H200 ~4.25 TB/s):
- bytes: 2.47 GB of weights (the head once) + the cache (16 layers x 2 x 8 x 128 x 640 x 2 B = 42 MB): ~0.84 ms at
  the H100's copy ceiling, ~0.59 ms on the H200: the floor of any arm.
- baseline: ~16 x ~15 + ~5 launches at ~12-20 us of eager Python each: ~3-5 ms per token, host-bound; the prefill
  (512 tokens, ~1.3 TFLOP, ~3 ms) is the same in every arm: ~3.1-5 ms per generated token in all.
- optimized: one replay of the fused step, ~0.9-1.1 ms (weights at ~80-90% of the copy ceiling, small-kernel tails):
  ~1.0-1.15 ms per token with the prefill shared out.
- the parts, each removed from the full stack: CUDA graphs ~1.6-2.5x (the compiled step in default mode launches
  ~250 kernels from Inductor's wrapper at ~5-8 us: ~1.6-2.4 ms, ch14's ``reduce_overhead_mode``), compile ~1.1-1.3x
  (the graphed eager step replays ~4x the kernels, unfused elementwise chains at ~2.9 us each: ~1.2-1.4 ms). Their
  product, 1.8-3.3x, is below the predicted 2.7-4.5x: the full-cache masked read costs the static step a little, and
  graphs remove a dispatch the compiled wrapper made worse than eager's per kernel; the ablation table checks
  whether the speedup equals what its parts multiply to.
- H200: the replayed arm gains the bandwidth (~0.65-0.8 ms), the host-bound baseline does not: 3.8-6x.
- floor: ``min_speedup`` 1.9 (70% of 2.7x).

Checked: the generated tokens against single-request greedy decoding in float64 (``teacher_forced_logits``), up to
the first near-tie (``pytest_aiperf.tokens``).

Not yet measured on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kernels import compat, seeded, torch_dtype
from kernels.ch12.capture import capture
from kernels.ch14 import config_for
from kernels.ch14.reduce_overhead_mode import DecodeStep
from kernels.llm import Decoder, KVCache, greedy_generate, teacher_forced_logits
from pytest_aiperf import Stateful, Work


@dataclass(frozen=True)
class DecodeStack:
    """How the decode steps run: through ``torch.compile`` (``compiled``) and replayed by CUDA graphs
    (``graphs``: graph trees when compiled, a hand capture otherwise; only on a GPU)."""

    compiled: bool
    graphs: bool


FULL = DecodeStack(compiled=True, graphs=True)


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """The prompt (1, prompt_len), the seeded model (no gradients), and how many tokens to generate."""
    hidden, layers, prompt_len, new_tokens = shape
    cfg = config_for(hidden).with_layers(layers)
    prompt = torch.randint(0, cfg.vocab, (1, prompt_len), generator=seeded(seed)).to(device)
    model = Decoder(cfg, dtype=torch_dtype(dtype), device=device, seed=seed, max_positions=prompt_len + new_tokens)
    return prompt, model.requires_grad_(False), new_tokens


def baseline_eager_generate(prompt: torch.Tensor, model: Decoder, new_tokens: int) -> torch.Tensor:
    """Greedy tokens (1, new_tokens) of eager ``greedy_generate``."""
    return greedy_generate(model, prompt, new_tokens)


@dataclass(eq=False)
class DecodeState:
    """A stack's static step over its cache, the call that runs one step (compiled, graphed or eager), and what it
    generates from."""

    stack: DecodeStack
    prompt: torch.Tensor
    new_tokens: int
    step: DecodeStep
    call: Any


def _graphed(step: DecodeStep, token: torch.Tensor) -> Any:
    """The eager step captured once into a CUDA graph (ch12's ``capture``): each call copies the token into the
    graph's input and replays it."""
    static = token.clone()
    graph, out = capture(step, [static])

    def replay(new: torch.Tensor) -> torch.Tensor:
        static.copy_(new)
        graph.replay()
        return out
    return replay


@torch.no_grad()
def _setup(stack: DecodeStack, prompt: torch.Tensor, model: Decoder, new_tokens: int) -> DecodeState:
    seq = prompt.shape[1]
    cache = KVCache(model.config, 1, seq + new_tokens, model.dtype, model.device)
    step = DecodeStep(model, cache, torch.tensor(seq, device=prompt.device))
    on_gpu = stack.graphs and prompt.is_cuda
    if stack.compiled:
        call = compat.compile(step, mode="reduce-overhead" if on_gpu else "default", dynamic=False)
    else:
        call = _graphed(step, prompt[:, -1:]) if on_gpu else step
    return DecodeState(stack, prompt, new_tokens, step, call)


@torch.no_grad()
def reset(state: DecodeState) -> None:
    """The cache zeroed, as setup made it."""
    for tensor in (*state.step.cache.keys, *state.step.cache.values):
        tensor.zero_()


@torch.no_grad()
def generated(state: DecodeState) -> torch.Tensor:
    """The timed work: prefill eagerly, then every decode step through the stack's call, the position advanced in
    place; the greedy tokens (1, new_tokens)."""
    step, seq = state.step, state.prompt.shape[1]
    token = step.model.prefill(state.prompt, step.cache, 0).argmax(-1, keepdim=True)
    step.pos.fill_(seq)
    tokens = [token]
    for _ in range(state.new_tokens - 1):
        token = state.call(token).argmax(-1, keepdim=True)
        step.pos.add_(1)
        tokens.append(token)
    return torch.cat(tokens, dim=1)


def arm(stack: DecodeStack) -> Stateful:
    return Stateful(setup=lambda *given: _setup(stack, *given), run=generated, reset=reset)


optimized_graphed_compiled_decode = arm(FULL)
ABLATIONS = {"no_cuda_graphs": arm(DecodeStack(compiled=True, graphs=False)),
             "no_compile": arm(DecodeStack(compiled=False, graphs=True))}


def token_reference(prompt: torch.Tensor, model: Decoder, new_tokens: int, tokens: torch.Tensor) -> torch.Tensor:
    """Float64 teacher-forced logits (1, new_tokens, vocab) of the model's exact float64 copy at every generated
    position."""
    return teacher_forced_logits(model.as_dtype(torch.float64), prompt, tokens.to(prompt.device))


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Per generated token, every weight read once (the embedding only for one row) and the live cache; the
    generated tokens are the items."""
    hidden, layers, prompt_len, new_tokens = shape
    cfg = config_for(hidden).with_layers(layers)
    weights = layers * cfg.params_per_layer + cfg.hidden + cfg.vocab * cfg.hidden
    cache = 2 * layers * cfg.kv_width * (prompt_len + new_tokens // 2)
    flops = 2 * (weights + 2 * layers * cfg.q_width * (prompt_len + new_tokens // 2))
    return Work(bytes=float(new_tokens * torch_dtype(dtype).itemsize * (weights + cache)),
                flops=float(new_tokens * flops), items=float(new_tokens), item_name="tokens")
