"""Guided decoding: each step's allowed-token mask built on the host from the sequences' grammar states vs packed
per-state bitmasks on the GPU, applied by one Triton kernel, with the grammar's state advanced on the device.

Both arms decode a batch greedily under the same token-level grammar index (``kernels.serving.grammar``: the
JSON-Lines ``JSON_RECORD`` grammar, 90 DFA states, over a synthetic byte-level vocabulary; built once, outside the
timed region, for both arms) and choose the same token: the argmax of the logits over the tokens the sequence's state
allows.

- Baseline: the automaton on the CPU, as outlines-based guided decoding (vLLM v0's logits processors) and most
  hand-written constrained decoders run it, with everything that can be built once built once: a bool table
  ``disallowed[state, token]`` (90 x vocab) on the host; per step, the sampled tokens come back to the host (one
  sync), numpy advances each sequence's state through the transition table and gathers the sequences' rows of the
  table into a pinned buffer (``np.take``), one non-blocking host-to-device copy of the [batch, vocab] bool mask,
  ``masked_fill_`` and argmax.
- Optimized: the automaton on the GPU, as xgrammar's and vLLM's structured output keep the masks: the packed bitmask
  table (int32 [90, vocab / 32], 32 tokens a word) and the transition table ([90, vocab]) live on the device;
  per step one Triton kernel reads each row's state and its bitmask words and writes -inf over the disallowed logits
  (vLLM's ``apply_grammar_bitmask``), argmax, the next states are a gather ``next_state[state, token]``, and the
  tokens are copied to pinned host memory without waiting (a streaming server's asynchronous output). The host never
  waits for the GPU until the last step.
- Mechanism: per step, the baseline's host work (a sync, the state update, a 2 MB row gather) and its 2 MB
  host-to-device copy sit on the critical path; the optimized arm's mask path is three small launches.

Shape ``(hidden, layers, vocab, batch, prompt_len, new_tokens)``: the decoder of ``serving_arms`` (hidden 2048: Llama
3.2 1B's layers) with ``layers`` layers and a ``vocab``-token head. Timing shape (2048, 2, 32000, 64, 32, 128): two
Llama-3.2-1B layers with a 32000-token vocabulary (Llama 2's size), bf16, 64 sequences with 32-token prompts, 128
constrained tokens each. The layers are identical work in both arms; two of sixteen keep the step's eager dispatch,
which both arms pay, from hiding the difference (see the last point of the napkin math).

Napkin math on an H100 SXM (3.35 TB/s; 3.0 TB/s measured copy), per step:
- both arms: a batch-64 decode of two layers dispatches ~92 kernels (~40 per layer, counted with a dispatch mode, and
  ~12 for the embedding, final norm, head and argmax), 1.4-1.9 ms at the 15.5-21 us per eager launch measured on the
  H100 VM (``kernels/ch12/cuda_graph_replay.py``); its GPU work, 0.37 GB of weights and head, ~0.13 ms, runs behind
  the host: the step is host-bound.
- baseline, on top: the row gather of 64 x 32000 B (2 MB) into pinned memory, ~0.1-0.3 ms of host memcpy (~0.3 ms
  with the state update on the 2-core CI machine, timed with ``time.perf_counter`` outside any case); the copy
  of those 2 MB at ~25-50 GB/s, ~0.04-0.08 ms, and the sync that waits for it and for the masked argmax, ~0.1 ms;
  the state update and Python ~0.03 ms: ~0.3-0.5 ms, 1.7-2.4 ms a step.
- optimized, on top: three launches (kernel, gather, output copy) for the baseline's two (copy, ``masked_fill_``),
  ~0.02 ms: 1.45-1.95 ms a step.
- predicted: 1.13-1.3x tokens/s on an H100; H200 (4.8 TB/s) the same, the step being host-bound. The saving per step
  is fixed (~0.3-0.5 ms), so its share shrinks with the eager dispatch both arms pay: at all sixteen layers (~650
  launches, 10-14 ms a step) it would be ~1.02-1.04x; on a CUDA-graphed engine (a 16-layer batch-64 step ~0.7-0.8 ms
  of GPU work, which the baseline can graph only up to the logits) ~1.4-1.6x, why serving engines keep the masks on
  the GPU.
- floor: ``min_speedup`` 1.05 (70% of the low end, 1.13x, is 0.79; never below 1.05).

Check: the tokens of both arms against the float64 model's teacher-forced logits with the grammar's mask applied at
the state each sequence's own tokens reach (``token_reference``; the masked reference keeps the near-tie band's
scale, see ``constrained``). Check shapes use the TINY model with 512- and 600-token vocabularies; the kernel runs under
``TRITON_INTERPRET=1`` on the CPU.

Not yet measured on a GPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl

from kernels import seeded, torch_dtype
from kernels.ch15.serving_arms import MAX_POSITIONS, config
from kernels.llm import Decoder, KVCache, teacher_forced_logits
from kernels.serving.grammar import JSON_RECORD, TokenFSM, char_dfa, synthetic_vocab, token_fsm
from pytest_aiperf import Stateful, Work
from pytest_aiperf.tokens import TokenMismatch

BLOCK = 1024


@triton.jit
def _apply_bitmask_kernel(logits_ptr, bitmask_ptr, states_ptr, vocab, words, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < vocab
    state = tl.load(states_ptr + row).to(tl.int64)
    word = tl.load(bitmask_ptr + state * words + offs // 32, mask=inside, other=0)
    allowed = (word >> (offs % 32)) & 1
    tl.store(logits_ptr + row * vocab + offs, float("-inf"), mask=inside & (allowed == 0))


def apply_token_bitmask(logits: torch.Tensor, packed: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """In place: -inf over each row's tokens whose bit is clear in ``packed[states[row]]``; returns ``logits``."""
    batch, vocab = logits.shape
    _apply_bitmask_kernel[(batch, triton.cdiv(vocab, BLOCK))](logits, packed, states, vocab, packed.shape[1],
                                                              BLOCK=BLOCK)
    return logits


@functools.lru_cache(maxsize=2)
def json_grammar(vocab: int) -> TokenFSM:
    """The ``JSON_RECORD`` index over the synthetic ``vocab``-token vocabulary (seed 0; the same for every case
    seed)."""
    return token_fsm(char_dfa(JSON_RECORD), synthetic_vocab(vocab, 0))


@functools.lru_cache(maxsize=2)
def guided_model(hidden: int, layers: int, vocab: int, dtype: str, seed: int, device: Any) -> Decoder:
    """The seeded ``serving_arms`` decoder with ``layers`` layers and a ``vocab``-token embedding and head."""
    return Decoder(config(hidden, layers).with_vocab(vocab), dtype=torch_dtype(dtype), device=device, seed=seed,
                   max_positions=MAX_POSITIONS)


@dataclass(frozen=True)
class Generation:
    """``new_tokens`` constrained tokens per sequence under ``grammar``."""

    new_tokens: int
    grammar: TokenFSM


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Seeded prompts [batch, prompt_len] (unconstrained token ids), the seeded model, and the generation plan; the
    grammar starts at its start state at the first generated token."""
    hidden, layers, vocab, batch, prompt_len, new_tokens = shape
    prompts = torch.randint(0, vocab, (batch, prompt_len), generator=seeded(seed)).to(device)
    model = guided_model(hidden, layers, vocab, dtype, seed, device)
    return prompts, model, Generation(new_tokens, json_grammar(vocab))


@dataclass(eq=False)
class Decoding:
    """One arm's buffers, built outside the timed region: the KV cache, and the grammar's tables where the arm reads
    them (host: the bool ``disallowed`` table, a pinned mask buffer and its device twin; device: the packed bitmasks,
    the transitions and a pinned token buffer)."""

    prompts: torch.Tensor
    model: Decoder
    plan: Generation
    cache: KVCache
    tables: dict[str, Any]


def _pinned(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, pin_memory=device.type == "cuda")


def _cache(prompts: torch.Tensor, model: Decoder, plan: Generation) -> KVCache:
    return KVCache(model.config, prompts.shape[0], prompts.shape[1] + plan.new_tokens, model.dtype, model.device)


def _host_setup(prompts: torch.Tensor, model: Decoder, plan: Generation) -> Decoding:
    shape, device = (prompts.shape[0], model.config.vocab), model.device
    tables = {"disallowed": ~plan.grammar.allowed, "mask": _pinned(shape, torch.bool, device),
              "device_mask": torch.empty(shape, dtype=torch.bool, device=device)}
    return Decoding(prompts, model, plan, _cache(prompts, model, plan), tables)


def _device_setup(prompts: torch.Tensor, model: Decoder, plan: Generation) -> Decoding:
    device = model.device
    tables = {"packed": torch.tensor(plan.grammar.packed, device=device),  # copies: the grammar is shared
              "next_state": torch.tensor(plan.grammar.next_state, dtype=torch.long, device=device),
              "tokens": _pinned((plan.new_tokens, prompts.shape[0]), torch.long, device)}
    return Decoding(prompts, model, plan, _cache(prompts, model, plan), tables)


@torch.no_grad()
def _host_automaton(state: Decoding) -> torch.Tensor:
    model, cache, plan, tables = state.model, state.cache, state.plan, state.tables
    batch, prompt_len = state.prompts.shape
    grammar, mask, device_mask = plan.grammar, tables["mask"], tables["device_mask"]
    states = np.full(batch, grammar.start, dtype=np.int64)
    out = np.empty((batch, plan.new_tokens), dtype=np.int64)
    logits = model.prefill(state.prompts, cache)
    for step in range(plan.new_tokens):
        np.take(tables["disallowed"], states, axis=0, out=mask.numpy())
        device_mask.copy_(mask, non_blocking=True)
        token = logits.masked_fill_(device_mask, float("-inf")).argmax(-1)
        chosen = token.cpu().numpy()
        out[:, step] = chosen
        states = grammar.next_state[states, chosen]
        if step + 1 < plan.new_tokens:
            logits = model.decode(token[:, None], cache, prompt_len + step)
    return torch.from_numpy(out)


@torch.no_grad()
def _device_automaton(state: Decoding) -> torch.Tensor:
    model, cache, plan, tables = state.model, state.cache, state.plan, state.tables
    batch, prompt_len = state.prompts.shape
    host_tokens = tables["tokens"]
    states = torch.full((batch,), plan.grammar.start, dtype=torch.long, device=model.device)
    logits = model.prefill(state.prompts, cache)
    for step in range(plan.new_tokens):
        token = apply_token_bitmask(logits, tables["packed"], states).argmax(-1)
        host_tokens[step].copy_(token, non_blocking=True)
        states = tables["next_state"][states, token]
        if step + 1 < plan.new_tokens:
            logits = model.decode(token[:, None], cache, prompt_len + step)
    if model.device.type == "cuda":
        torch.cuda.current_stream(model.device).synchronize()
    return host_tokens.T.clone()


baseline_host_mask_per_step = Stateful(setup=_host_setup, run=_host_automaton)
optimized_device_bitmask = Stateful(setup=_device_setup, run=_device_automaton)


def constrained(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """``logits`` [rows, vocab] with each row's disallowed entries set to one value c below its two best allowed
    ones, so the argmax and the top-two gap are the allowed tokens'. c is minus the root mean square of the entries
    it replaces, which leaves the row's rms (the scale of the near-tie band) unchanged, unless that is above the
    second-best allowed logit: then that logit (ties below the best change no gap), or the only allowed logit minus
    the row's rms. A row with no allowed token (after a disallowed one) is left as it is."""
    values = torch.where(allowed, logits, float("-inf"))
    top = values.topk(2, dim=-1).values
    count = allowed.sum(-1)
    rms = logits.pow(2).mean(-1).sqrt()
    replaced = (logits.pow(2) * ~allowed).sum(-1) / (~allowed).sum(-1).clamp(min=1)
    ceiling = torch.where(count >= 2, top[:, 1], top[:, 0] - rms)
    fill = torch.minimum(-replaced.sqrt(), ceiling)
    masked = torch.where(allowed, logits, fill[:, None])
    return torch.where((count > 0)[:, None], masked, logits)


@torch.no_grad()
def token_reference(prompts: torch.Tensor, model: Decoder, plan: Generation, tokens: torch.Tensor) -> torch.Tensor:
    """Float64 teacher-forced logits [batch, new_tokens, vocab] of the sequences' own tokens, constrained to what the
    grammar allows at the state those tokens reach. Tokens of another shape raise ``TokenMismatch``."""
    if tuple(tokens.shape) != (prompts.shape[0], plan.new_tokens):
        raise TokenMismatch(f"tokens {tuple(tokens.shape)} returned for {prompts.shape[0]} sequences of "
                            f"{plan.new_tokens} tokens")
    logits = teacher_forced_logits(model.as_dtype(torch.float64), prompts, tokens.to(prompts.device))
    states = plan.grammar.walk(tokens.cpu().numpy())
    allowed = torch.from_numpy(plan.grammar.allowed).to(logits.device)
    for step in range(plan.new_tokens):
        rows = torch.from_numpy(states[:, step]).to(logits.device)
        live = (rows >= 0)[:, None]
        logits[:, step] = constrained(logits[:, step], allowed[rows.clamp(min=0)] & live)
    return logits


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The constrained tokens generated: batch x new_tokens."""
    _, _, _, batch, _, new_tokens = shape
    return Work(items=float(batch * new_tokens), item_name="tokens")
