"""Speculative decoding: target-only greedy decoding vs a self-speculative draft (the target's first layers) proposing
k tokens that the target verifies in one forward.

- Baseline: greedy decoding with the target alone (``Decoder.decode`` on a static ``KVCache``, as Hugging Face's
  ``generate`` with a static cache): one forward per token, each token read back to the host as it is made
  (streamed).
- Optimized: self-speculative decoding as LayerSkip (Elhoushi et al., ACL 2024) drafts: the draft is the target's
  first ``draft_layers`` layers, its final norm and its LM head (``hidden_states(..., depth=...)``), sharing the
  target's weights and its KV cache for those layers. Each round drafts k tokens greedily, then runs the target once
  over the last accepted token and the k drafts (``Decoder.forward`` with the cache: k + 1 positions' logits) and
  reads the k + 1 target choices and the k drafts back to the host (one sync). The drafts equal to the target's
  choices at the same positions are accepted up to the first disagreement, where the target's own token is taken;
  with every draft accepted, the target's token after the last is a bonus. The output is exactly target-only greedy
  decoding's (Leviathan et al., 2023, at temperature 0), up to the rounding of a (k + 1)-token forward against a
  1-token one.
- Rollback: the cache is contiguous, so rejecting drafts is a length reset: the next round writes from the first
  position after the accepted tokens, and the stale keys and values behind it are never attended to (a cached
  forward reads only positions before its own). The draft's keys and values of its layers, written while drafting,
  are overwritten by the target's verify forward for the same positions.
- Mechanism: one target forward (its weights read once, its ~650 launches dispatched once) yields 1 + (accepted
  drafts) tokens; k draft forwards cost k x draft_layers / layers of one.

How agreement is obtained, and what the speedup depends on. Acceptance is a property of trained weights; these are
random. The target's layers after the draft's have their residual writes (attention output and MLP down
projections) scaled by ``GAMMA`` (a power of two, exact in bf16): 1/16 at the timing shape, 1/8 at the check
shapes. So the target is its first layers plus small corrections, and the draft agrees with it where the
corrections do not flip its argmax. Measured in fp32 on the CPU at the timing shape's model (sixteen layers, a
two-layer draft; seed 1, a 16-token random prompt, 32 greedy tokens, the draft's argmax against the target's along
the target's own tokens), the agreement a: 0.75 at 1/16, 0.41 at 1/8, 0.25 at 1/4, 0.88 at 1/32. The LM head is
untied (Llama 3.2 1B ties it): with a tied head and damped deep layers the random target echoes the current token
(at 1/4: 3 distinct tokens in 40 generated); untied, 32 of 32 are distinct at 1/16. The case's ``workload``
statistics are the tokens per target forward after the prefill (E below, which the speedup follows) and the
acceptance rate (accepted drafts over drafted ones: drafts after a rejection count as rejected, so it is below the
agreement, ~0.51 at a = 0.75 and k = 4); a trained draft of another agreement gives another speedup (below). At the
check shapes (TINY width, four layers, a one-layer draft, fp32) E is 2.1-2.9.

Shape ``(hidden, layers, draft_layers, k, prompts, prompt_len, new_tokens)``, batch 1: the prompts are served one
after another. Timing shape (2048, 16, 2, 4, 2, 512, 128): Llama-3.2-1B's sixteen layers with a 32000-token untied
head, bf16, a two-layer draft, k = 4, two 512-token prompts, 128 new tokens each. Gated metric ``tpot_p50``: a
request's mean time between output tokens after its first (the prefill is the same in both arms).

Napkin math on an H100 SXM (3.35 TB/s; 3.0 TB/s measured copy), eager PyTorch in both arms:
- a target decode step dispatches ~650 kernels (~40 per layer and ~12 for the embedding, final norm, head and argmax,
  counted with a dispatch mode) at the 15.5-21 us per eager launch measured on the H100 VM
  (``kernels/ch12/cuda_graph_replay.py``): 10-13.7 ms, while its GPU work, 2.08 GB of weights and head, is 0.69 ms
  at 3.0 TB/s. Steps are host-bound, and the cost of a forward is its launch count.
- a draft step: ~92 launches (1.4-1.9 ms); the verify forward over 5 positions: ~670 (10.4-14 ms); a round, four
  drafts, the verify and ~8 launches of bookkeeping: ~1,046 launches, 1.61 target steps.
- tokens per round E = (1 - a^(k+1)) / (1 - a) at acceptance a (Leviathan et al.): a = 0.6: 2.31, 0.7: 2.77,
  0.75: 3.05, 0.8: 3.36; speedup E / 1.61: 1.43x, 1.72x, 1.89x, 2.09x.
- predicted: 1.45-2.1x TPOT p50 at the measured agreement (0.75 over 32 tokens, a ~0.6-0.8 over the timing run), the
  same on an H200 (4.8 TB/s; 4.25 measured): the steps are host-bound there too. Graphed (0.69 ms a target step,
  ~0.125 ms a draft step, ~0.72 ms a verify: a round is 1.77 target steps, the draft's share of the LM head weighing
  more) the same a would give 1.3-1.9x. Trained drafts reach 2-3.5x (EAGLE, Medusa); this construction does not
  claim those.
- floor: ``min_speedup`` 1.05 (70% of the low end, 1.45x, is 1.02; never below 1.05).

Check: the tokens of both arms against the float64 target's teacher-forced logits (``token_reference``, the near-tie
rule of ``pytest_aiperf.tokens``). A verify that accepts drafts without comparing them, or keeps the draft instead of
the target's token at the first disagreement, fails it (``pytest_aiperf/tests/kernels/test_speculation.py``).

Not yet measured on a GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from kernels import seeded, torch_dtype
from kernels.ch15.serving_arms import MAX_POSITIONS, config
from kernels.llm import Decoder, KVCache, teacher_forced_logits
from pytest_aiperf import Stateful
from pytest_aiperf.latency import Timeline
from pytest_aiperf.tokens import TokenMismatch

GAMMA = {64: 1 / 8, 2048: 1 / 16}

Accept = Callable[[list[int], list[int]], int]


@functools.lru_cache(maxsize=2)
def layerskip_model(hidden: int, layers: int, draft_layers: int, dtype: str, seed: int, device: Any) -> Decoder:
    """The seeded ``serving_arms`` decoder with an untied head, the residual writes of its layers after the first
    ``draft_layers`` scaled by ``GAMMA[hidden]``."""
    cfg = dataclasses.replace(config(hidden, layers), tie_embeddings=False)
    model = Decoder(cfg, dtype=torch_dtype(dtype), device=device, seed=seed, max_positions=MAX_POSITIONS)
    with torch.no_grad():
        for layer in model.layers[draft_layers:]:
            layer.self_attn.o_proj.weight.mul_(GAMMA[hidden])
            layer.mlp.down_proj.weight.mul_(GAMMA[hidden])
    return model


@dataclass(frozen=True)
class Speculation:
    """``new_tokens`` per prompt; the draft is the first ``draft_layers`` layers and proposes ``k`` a round."""

    new_tokens: int
    draft_layers: int
    k: int


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Seeded random prompts [prompts, prompt_len], the model, and the speculation plan."""
    hidden, layers, draft_layers, k, prompts, prompt_len, new_tokens = shape
    model = layerskip_model(hidden, layers, draft_layers, dtype, seed, device)
    tokens = torch.randint(0, model.config.vocab, (prompts, prompt_len), generator=seeded(seed)).to(device)
    return tokens, model, Speculation(new_tokens, draft_layers, k)


@dataclass(eq=False)
class Stream:
    """One arm's state: the prompts, the model, the plan, a batch-1 cache with room for a last round's drafts, and
    the counts of the last run (drafted and accepted tokens, target forwards after the prefill)."""

    prompts: torch.Tensor
    model: Decoder
    plan: Speculation
    cache: KVCache
    drafted: int = 0
    accepted: int = 0
    rounds: int = 0


def _setup(prompts: torch.Tensor, model: Decoder, plan: Speculation) -> Stream:
    room = prompts.shape[1] + plan.new_tokens + plan.k + 1
    return Stream(prompts, model, plan, KVCache(model.config, 1, room, model.dtype, model.device))


@torch.no_grad()
def _target_greedy(state: Stream) -> tuple[torch.Tensor, Timeline]:
    model, cache, plan = state.model, state.cache, state.plan
    timeline, out = Timeline(), []
    for prompt in state.prompts:
        request = timeline.add(time.perf_counter())
        token = model.prefill(prompt[None], cache).argmax(-1, keepdim=True)
        tokens = [token.item()]
        timeline.tokens(request)
        for step in range(1, plan.new_tokens):
            token = model.decode(token, cache, prompt.shape[0] + step - 1).argmax(-1, keepdim=True)
            tokens.append(token.item())
            timeline.tokens(request)
        out.append(tokens)
    return torch.tensor(out), timeline


def longest_agreement(drafted: list[int], target: list[int]) -> int:
    """Drafts accepted: the longest prefix of ``drafted`` equal to the target's choices at the same positions."""
    accepted = 0
    while accepted < len(drafted) and drafted[accepted] == target[accepted]:
        accepted += 1
    return accepted


def speculative(accept: Accept) -> Stateful:
    """A self-speculative arm whose verify accepts ``accept(drafted, target)`` drafts (``longest_agreement``)."""

    @torch.no_grad()
    def draft_then_verify(state: Stream) -> tuple[torch.Tensor, Timeline]:
        model, cache, plan = state.model, state.cache, state.plan
        state.drafted = state.accepted = state.rounds = 0
        timeline, out = Timeline(), []
        for prompt in state.prompts:
            request = timeline.add(time.perf_counter())
            length = prompt.shape[0]
            token = model.prefill(prompt[None], cache).argmax(-1, keepdim=True)
            tokens = [token.item()]
            timeline.tokens(request)
            while len(tokens) < plan.new_tokens:
                drafts, last = [], token
                for offset in range(plan.k):
                    last = model(last, cache, length + offset, depth=plan.draft_layers)[:, -1:].argmax(-1)
                    drafts.append(last)
                choice = model(torch.cat((token, *drafts), dim=1), cache, length).argmax(-1)
                both = torch.cat((choice, *drafts), dim=1)[0].tolist()
                target, drafted = both[:plan.k + 1], both[plan.k + 1:]
                taken = accept(drafted, target)
                new = (drafted[:taken] + [target[taken]])[:plan.new_tokens - len(tokens)]
                tokens.extend(new)
                timeline.tokens(request, len(new))
                state.drafted, state.accepted, state.rounds = (state.drafted + plan.k, state.accepted + taken,
                                                               state.rounds + 1)
                length += taken + 1
                token = choice[:, taken:taken + 1]
            out.append(tokens)
        return torch.tensor(out), timeline

    return Stateful(setup=_setup, run=draft_then_verify)


baseline_target_greedy = Stateful(setup=_setup, run=_target_greedy)
optimized_draft_then_verify = speculative(longest_agreement)


@torch.no_grad()
def token_reference(prompts: torch.Tensor, model: Decoder, plan: Speculation, tokens: torch.Tensor) -> torch.Tensor:
    """Float64 teacher-forced logits [prompts, new_tokens, vocab] of each prompt's generated tokens; tokens of
    another shape raise ``TokenMismatch``."""
    if tuple(tokens.shape) != (prompts.shape[0], plan.new_tokens):
        raise TokenMismatch(f"tokens {tuple(tokens.shape)} returned for {prompts.shape[0]} prompts of "
                            f"{plan.new_tokens} tokens")
    return teacher_forced_logits(model.as_dtype(torch.float64), prompts, tokens.to(prompts.device))


def workload(prompts: torch.Tensor, model: Decoder, plan: Speculation) -> dict[str, float]:
    """What the speedup follows: the share of drafted tokens accepted, and the tokens each target forward after the
    prefill yields (accepted drafts plus the target's own)."""
    state = _setup(prompts, model, plan)
    optimized_draft_then_verify.run(state)
    return {"acceptance_rate": state.accepted / state.drafted,
            "tokens_per_target_forward": (state.accepted + state.rounds) / state.rounds}
