"""What the chapter's serving pairs share: the model a shape names, the state of an arm (a KV pool, a scheduler, a
prefix cache) built outside the timed region, the timed replay of the trace, and the float64 reference its tokens are
checked against.

A case's shape starts with the model's hidden size, which picks the preset (64: ``TINY`` for the CPU checks; 2048:
Llama-3.2-1B's layers with a 32000-token vocabulary, the plan's "L1B-32k"; 4096: Llama-3-8B's, for the
two-GPU pair whose prefill chunks must outweigh a step's host dispatch), then its layer count: (2048, 4, ...) is
four Llama-3.2-1B layers. The weights are seeded by the case's seed, as the trace is, so every checked seed serves
another model; a built model is kept for the few calls of one seed.

Why four layers of sixteen. The engine runs eager PyTorch: a step dispatches ~50 kernels per layer (counted with a
dispatch mode: norms, projections, rotary, the KV write, attention, the MLP, residual adds) plus ~2 per prefill chunk
per layer (~11 for a chunk that starts after cached tokens), ~210 at four layers and ~800 at sixteen. At the
15.5-21 us per launch measured for Hugging Face-style eager code on the H100 VM (``kernels/ch12/cuda_graph_replay.py``)
a step costs ~3.3-4.4 ms of host dispatch at four layers, while a decode step at batch 64 reads 0.62 GB (four layers,
0.49 GB, and the 32000-token LM head, 0.13 GB): ~0.2 ms at 3.0 TB/s. Steps are host-bound except for prefills of many
thousands of tokens, at any layer count (both costs grow per layer), so the lessons, which change the number of steps
and the tokens each one carries, keep their ratios at four layers and replay hundreds of requests in a few seconds.

Why 32000 tokens. The token check at the timing shape holds float64 logits for every generated position (requests x
longest output x vocabulary x 8 B, 8.4 GB at 256 x 128 x 32000, twice that while compared); Llama 3's 128256-token
vocabulary would make it 34 GB.

An arm is ``Stateful``: ``inputs`` returns (trace, model, deployment); ``setup`` builds the pool, the scheduler and
the prefix cache the deployment names; ``replay`` serves the trace (``kernels.serving.serve``) and returns every
request's tokens, padded with ``PAD`` to ``[requests, longest output]``, and the ``Timeline``, which carries the
share of step time the engine's Python scheduler took (``ServeStats.scheduler_share``, reported, never gated);
``reset`` empties the pool and the prefix cache on it. Decode attention is the Triton paged kernel on a GPU and
gather + SDPA elsewhere (the kernel is slow under the Triton interpreter, where the serving tests check it:
``pytest_aiperf/tests/kernels/test_serving.py``).

The reference. ``token_reference`` runs the float64 copy of the served model (its rounded weights, widened) over each
request's prompt and generated tokens, teacher-forced: the logits single-request ``greedy_generate`` would choose from
in float64 wherever the tokens agree. The requests of one shared-prefix group compute their common prefix once into a
float64 ``KVCache`` and continue from it (the same computation, up to float64 rounding). A padded position's row has
``PAD`` as its only maximum, so a request returned short fails at its first missing token.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from kernels import torch_dtype
from kernels.llm import LLAMA_3_2_1B, LLAMA_3_8B, TINY, Decoder, KVCache, LlamaConfig
from kernels.serving import BlockHashCache, ContiguousPool, KVPool, PagedPool, ServeStats, Trace, serve
from pytest_aiperf import Stateful
from pytest_aiperf.latency import Timeline
from pytest_aiperf.tokens import TokenMismatch

PAD = 0
MAX_POSITIONS = 8192
PRESETS = {TINY.hidden: TINY, LLAMA_3_2_1B.hidden: LLAMA_3_2_1B.with_vocab(32000),
           LLAMA_3_8B.hidden: LLAMA_3_8B.with_vocab(32000)}
BLOCK = {TINY.hidden: 4, LLAMA_3_2_1B.hidden: 16, LLAMA_3_8B.hidden: 16}


def config(hidden: int, layers: int) -> LlamaConfig:
    """The preset ``hidden`` wide, with ``layers`` decoder layers."""
    if hidden not in PRESETS:
        raise ValueError(f"no serving preset is {hidden} wide; known widths: {', '.join(map(str, PRESETS))}")
    return PRESETS[hidden].with_layers(layers)


@functools.lru_cache(maxsize=4)
def served_model(hidden: int, layers: int, dtype: str, seed: int, device: Any) -> Decoder:
    """The seeded model a shape names: weights drawn on the CPU and copied, the same values on every device."""
    return Decoder(config(hidden, layers), dtype=torch_dtype(dtype), device=device, seed=seed,
                   max_positions=MAX_POSITIONS)


@dataclass(frozen=True)
class Deployment:
    """How the server is set up, the same for both arms but for the pair's technique: at most ``max_batch`` running
    sequences, a KV pool of ``kv_tokens`` tokens in blocks of ``block_size``, sequences of at most ``max_len`` tokens,
    and chunked prefill's ``token_budget`` per step (0 where no arm chunks)."""

    max_batch: int
    kv_tokens: int
    max_len: int
    block_size: int
    token_budget: int = 0


def roomy(trace: Trace, max_batch: int, block_size: int, extra_tokens: int = 0, token_budget: int = 0) -> Deployment:
    """A deployment whose pool never limits admission: ``max_batch`` sequences of the trace's longest prompt and
    longest output (what static batching reserves at most), in whole blocks, and ``extra_tokens`` more."""
    longest = max(len(r.prompt) for r in trace.requests) + max(r.output_len for r in trace.requests)
    blocks = -(-longest // block_size)
    return Deployment(max_batch, max_batch * blocks * block_size + extra_tokens, longest, block_size, token_budget)


@dataclass(eq=False)
class ArmState:
    """One arm's server: the trace it replays, the model, its pool, scheduler and prefix cache, and the statistics of
    its last replay."""

    trace: Trace
    model: Decoder
    pool: KVPool
    scheduler: Any
    prefix: BlockHashCache | None = None
    stats: ServeStats | None = None

    @property
    def attention(self) -> str:
        return "paged" if self.model.device.type == "cuda" else "gather"


def paged_pool(model: Decoder, deployment: Deployment) -> PagedPool:
    """A paged pool of the deployment's KV tokens, one table row per sequence slot."""
    return PagedPool(model.config, deployment.kv_tokens // deployment.block_size, block_size=deployment.block_size,
                     max_seqs=deployment.max_batch, max_len=deployment.max_len, dtype=model.dtype, device=model.device)


def contiguous_pool(model: Decoder, deployment: Deployment) -> ContiguousPool:
    """The deployment's KV tokens as whole ``max_len`` reservations, one per sequence slot."""
    return ContiguousPool(model.config, deployment.kv_tokens // deployment.max_len, deployment.max_len,
                          block_size=deployment.block_size, dtype=model.dtype, device=model.device)


def padded(tokens: Sequence[Sequence[int]], trace: Trace) -> torch.Tensor:
    """Each request's tokens in a row of ``[requests, longest output]``, ``PAD`` after its own."""
    width = max(r.output_len for r in trace.requests)
    return torch.tensor([list(row) + [PAD] * (width - len(row)) for row in tokens], dtype=torch.long)


def replay(state: ArmState) -> tuple[torch.Tensor, Timeline]:
    """The timed work: serve every request of the trace; its tokens (padded) and their timeline."""
    out = serve(state.trace, state.model, state.pool, state.scheduler, prefix=state.prefix, attention=state.attention)
    state.stats = out.stats
    out.timeline.engine["scheduler_share"] = out.stats.scheduler_share
    return padded(out.tokens, state.trace), out.timeline


def reset(state: ArmState) -> None:
    """Every sequence freed and the prefix cache on the pool emptied, outside the timed region."""
    state.pool.reset()


def arm(setup: Any) -> Stateful:
    """A serving arm: ``setup(trace, model, deployment) -> ArmState``, replayed and reset as above."""
    return Stateful(setup=setup, run=replay, reset=reset)


def served(served_arm: Stateful, inputs: Sequence[Any]) -> ServeStats:
    """The statistics of one replay of ``served_arm`` on ``inputs`` (a case's ``workload``)."""
    state = served_arm.setup(*inputs)
    served_arm.run(state)
    return state.stats


def _groups(trace: Trace) -> list[list[int]]:
    """Request indices by shared-prefix group; a request of no group is a group alone."""
    groups: dict[int, list[int]] = {}
    for index, request in enumerate(trace.requests):
        groups.setdefault(request.group if request.group >= 0 else -1 - index, []).append(index)
    return list(groups.values())


def _common_prefix(prompts: list[tuple[int, ...]]) -> int:
    """Leading tokens every prompt shares, short of the shortest prompt's last (0 for one prompt)."""
    if len(prompts) < 2:
        return 0
    limit, first, count = min(len(p) for p in prompts) - 1, prompts[0], 0
    while count < limit and all(p[count] == first[count] for p in prompts):
        count += 1
    return count


@torch.no_grad()
def token_reference(trace: Trace, model: Decoder, deployment: Deployment, tokens: torch.Tensor) -> torch.Tensor:
    """Float64 teacher-forced logits ``[requests, longest output, vocab]`` at every generated position of
    ``tokens``; padded positions hold a row whose only maximum is ``PAD``. Tokens for another number of requests or
    positions raise ``TokenMismatch``."""
    width = max(r.output_len for r in trace.requests)
    if tuple(tokens.shape) != (len(trace), width):
        raise TokenMismatch(f"tokens {tuple(tokens.shape)} returned for {len(trace)} requests whose longest output is "
                            f"{width}: a request is missing or holds too many tokens")
    reference = model.as_dtype(torch.float64)
    device, cfg = model.device, model.config
    tokens = tokens.to(device)
    logits = torch.zeros(*tokens.shape, cfg.vocab, dtype=torch.float64, device=device)
    logits[..., PAD] = 1.0
    for members in _groups(trace):
        requests = [trace.requests[i] for i in members]
        shared = _common_prefix([r.prompt for r in requests])
        cache = None
        if shared:
            longest = max(len(r.prompt) + r.output_len for r in requests)
            cache = KVCache(cfg, 1, longest, torch.float64, device)
            reference.hidden_states(torch.tensor([requests[0].prompt[:shared]], device=device), cache, 0)
        for index, request in zip(members, requests):
            count, last = request.output_len, len(request.prompt) - 1
            sequence = torch.cat((torch.tensor(request.prompt, device=device), tokens[index, :count - 1]))[None]
            hidden = reference.hidden_states(sequence[:, shared:], cache, shared) if shared \
                else reference.hidden_states(sequence)
            logits[index, :count] = reference.logits(hidden[0, last - shared:])
    return logits
