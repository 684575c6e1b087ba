"""Async step scheduling: a decode loop whose host reads each step's tokens before launching the next (synchronous
scheduling) vs one that launches step n+1 first and processes step n's tokens while the GPU runs it (vLLM v1's
async scheduling, one step ahead).

- Both: a static batch of requests, prefilled outside the timed region, decoded greedily by one CUDA-graphed step
  (``kernels.ch16.graphed``) that runs the model, takes the argmax, writes it into the next step's token buffer and
  advances the position, all on the device: the next step needs nothing from the host. The host's per-step work is
  a server's output processing (``Output``, after vLLM's ``OutputProcessor``): per request, append the token,
  detokenize it incrementally (a synthetic vocabulary of letter pieces), check the stop conditions (``EOS``, a stop
  string in the text's tail, the request's token limit) and queue a streamed update.
- Baseline: replay step n, ``.tolist()`` its tokens (the host waits for the GPU), process them, replay step n+1.
  The GPU idles while the host processes.
- Optimized: replay step n+1 as soon as step n is launched; step n's tokens go to a pinned buffer by a non-blocking
  copy and an event; the host processes them while the GPU runs step n+1. A request that stops at step n has one
  more token computed (step n+1 was already launched), which is discarded, as the baseline discards the rows of
  finished requests in its static batch; where the last requests all stop on ``EOS`` or a stop string before their
  limits, the optimized arm runs one more step than the baseline (it launches no step that the limits, known on the
  host, say nobody needs).
- Mechanism: per step, max(GPU, host) instead of GPU + host.

Off CUDA the step runs eagerly and the copies are synchronous: the same tokens, no overlap.

Shape ``(hidden, layers, batch, prompt_len, max_new)``: the serving preset of ``kernels/ch15/serving_arms.py`` (64:
TINY; 2048: Llama-3.2-1B's layers with a 32000-token vocabulary) with ``layers`` layers; request r generates at most
``max_new[r]`` tokens (its limit), drawn uniformly from max_new/2..max_new (seeded). Timing shape
(2048, 4, 256, 512, 128): four Llama-3.2-1B layers, 256 requests of 512-token prompts, up to 128 new tokens each,
bf16.

Napkin math on an H100 SXM (3.0 TB/s measured copy), per step of the timing shape:
- GPU: weights 4 x 60.8 M + 65.5 M (head) = 309 M parameters = 0.62 GB, the static cache read whole (256 x 640
  positions x 8 KB) 1.34 GB: ~0.65 ms, plus ~150 small kernels in the replay (~35 per layer, counted with a dispatch
  mode on the CPU; ~0.2-0.35 ms): ~0.85-1.0 ms.
- host: ``Output.process`` measured 0.71-0.76 us per request and step on this project's CPU machine (Python 3.11,
  256 requests: 0.18-0.19 ms a step), taken as 0.18-0.4 ms on a GPU host, plus the readback of 256 tokens and the
  replay's launch (~0.04 ms): ~0.22-0.44 ms.
- baseline ~1.07-1.44 ms vs optimized ~0.85-1.0 ms per step (max of the two): 1.2-1.5x. H200 (4.25 TB/s): the GPU
  step ~0.6-0.75 ms, the host the same: 1.3-1.7x. More where the host is slower or the model smaller.
- predicted speedup: 1.2-1.5x (H100), 1.3-1.7x (H200); floor ``min_speedup`` 1.05 (70% of 1.2 is 0.84).

Checked: every request's tokens against the float64 teacher-forced reference (``token_reference``, near-tie rule).
Not yet measured on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import seeded, torch_dtype
from kernels.ch15.serving_arms import config, served_model
from kernels.ch16.graphed import GraphedStep
from kernels.llm import Decoder, KVCache
from pytest_aiperf import Stateful, Work

EOS = 2
PAD = 0
STOP_STRINGS = ("qxz", "jvq")
TAIL = 8


def vocabulary(size: int) -> list[str]:
    """A synthetic detokenizer table: a seeded piece of 1-6 lowercase letters (a leading space on a quarter of them)
    per token id, as a byte-pair vocabulary maps ids to text."""
    gen = seeded(size)
    lengths = torch.randint(1, 7, (size,), generator=gen).tolist()
    letters = torch.randint(0, 26, (size, 6), generator=gen).tolist()
    spaces = (torch.rand(size, generator=gen) < 0.25).tolist()
    return [(" " if space else "") + "".join(chr(97 + c) for c in row[:n])
            for n, row, space in zip(lengths, letters, spaces)]


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """The prompts (batch, prompt_len), each request's token limit (a CPU int64 tensor), and the seeded model."""
    hidden, layers, batch, prompt_len, max_new = shape
    model = served_model(hidden, layers, dtype, seed, device)
    gen = seeded(seed)
    prompts = torch.randint(0, model.config.vocab, (batch, prompt_len), generator=gen).to(device)
    limits = torch.randint(max(1, max_new // 2), max_new + 1, (batch,), generator=gen)
    return prompts, limits, model


class Output:
    """The host side of the loop, what a server's output processor does per request and step (vLLM's
    ``OutputProcessor``): append the token, detokenize it incrementally, check the stop conditions (``EOS``, a stop
    string in the text's tail, the token limit) and queue a streamed update for the client."""

    def __init__(self, limits: list[int], pieces: list[str]) -> None:
        self.limits, self.pieces = limits, pieces
        self.tokens: list[list[int]] = [[] for _ in limits]
        self.text: list[list[str]] = [[] for _ in limits]
        self.tails = [""] * len(limits)
        self.stream: list[tuple[int, int, str, bool]] = []
        self.running = set(range(len(limits)))

    def process(self, sampled: list[int]) -> None:
        """One step's tokens (one per request, finished requests' ignored)."""
        for r in sorted(self.running):
            token = sampled[r]
            piece = self.pieces[token]
            self.tokens[r].append(token)
            self.text[r].append(piece)
            tail = (self.tails[r] + piece)[-TAIL:]
            self.tails[r] = tail
            done = token == EOS or any(stop in tail for stop in STOP_STRINGS) or len(self.tokens[r]) >= self.limits[r]
            self.stream.append((r, token, piece, done))
            if done:
                self.running.discard(r)

    def padded(self) -> torch.Tensor:
        width = max(self.limits)
        return torch.tensor([row + [PAD] * (width - len(row)) for row in self.tokens], dtype=torch.long)


def generated_count(row: list[int], limit: int, pieces: list[str]) -> int:
    """How many of ``row``'s tokens a request keeps: the output processor's stop rules applied to them."""
    out = Output([limit], pieces)
    for token in row[:limit]:
        if not out.running:
            break
        out.process([token])
    return len(out.tokens[0])


def _step(model: Decoder, token: torch.Tensor, cache: KVCache, pos: torch.Tensor) -> torch.Tensor:
    """One greedy step on the device: the next tokens (batch, 1), written into ``token`` for the next step."""
    token.copy_(model.decode(token, cache, pos).argmax(-1, keepdim=True))
    pos.add_(1)
    return token


@torch.no_grad()
def setup(prompts: torch.Tensor, limits: torch.Tensor, model: Decoder) -> dict[str, Any]:
    """Prefill every prompt into a static cache, keep the first tokens, and capture the step (graphed on CUDA)."""
    batch, prompt_len = prompts.shape
    limits = limits.tolist()
    cache = KVCache(model.config, batch, prompt_len + max(limits), model.dtype, model.device)
    first = model.prefill(prompts, cache, 0).argmax(-1, keepdim=True)
    token, pos = first.clone(), torch.tensor(prompt_len, device=prompts.device)
    step = GraphedStep(torch.no_grad()(_step), (model, token, cache, pos))
    state = {"first": first, "token": token, "pos": pos, "prompt_len": prompt_len, "step": step, "limits": limits,
             "pieces": vocabulary(model.config.vocab)}
    reset(state)
    return state


def reset(state: dict[str, Any]) -> None:
    """Back to the first generated tokens at the end of the prompts (the capture's warm-up and the step advanced
    them); later cache positions are rewritten before they are read."""
    state["token"].copy_(state["first"])
    state["pos"].fill_(state["prompt_len"])


def synchronous_loop(state: dict[str, Any]) -> torch.Tensor:
    """Process the first tokens; then per step: replay, read the tokens back (the host waits), process them."""
    out = Output(state["limits"], state["pieces"])
    out.process(state["first"][:, 0].tolist())
    while out.running:
        out.process(state["step"].step()[:, 0].tolist())
    return out.padded()


def one_step_ahead_loop(state: dict[str, Any]) -> torch.Tensor:
    """Launch step n+1 before processing step n's tokens, which arrive through a pinned buffer and an event. No step
    is launched when the one in flight brings every running request to its limit (the host knows the limits)."""
    step, cuda = state["step"], state["token"].is_cuda
    out = Output(state["limits"], state["pieces"])
    buffers = [torch.empty(len(state["limits"]), dtype=torch.long, pin_memory=cuda) for _ in range(2)]
    events = [torch.cuda.Event() if cuda else None for _ in range(2)]
    out.process(state["first"][:, 0].tolist())
    pending = None
    while out.running:
        launched = None
        if pending is None or not all(len(out.tokens[r]) + 1 >= out.limits[r] for r in out.running):
            launched = 0 if pending is None else 1 - pending
            buffers[launched].copy_(step.step()[:, 0], non_blocking=cuda)
            if cuda:
                events[launched].record()
        if pending is not None:
            if cuda:
                events[pending].synchronize()
            out.process(buffers[pending].tolist())
        pending = launched
    return out.padded()


baseline_synchronous_scheduling = Stateful(setup=setup, run=synchronous_loop, reset=reset)
optimized_one_step_ahead = Stateful(setup=setup, run=one_step_ahead_loop, reset=reset)


@torch.no_grad()
def token_reference(prompts: torch.Tensor, limits: torch.Tensor, model: Decoder, tokens: torch.Tensor) -> torch.Tensor:
    """Float64 teacher-forced logits (batch, longest limit, vocab) at each request's generated positions, up to where
    the output processor's stop rules end it; later positions hold a row whose only maximum is ``PAD``."""
    reference = model.as_dtype(torch.float64)
    tokens = tokens.to(prompts.device)
    width = int(limits.max())
    logits = torch.zeros(*tokens.shape, model.config.vocab, dtype=torch.float64, device=prompts.device)
    logits[..., PAD] = 1.0
    pieces = vocabulary(model.config.vocab)
    for r, limit in enumerate(limits.tolist()):
        count = generated_count(tokens[r].tolist(), limit, pieces)
        sequence = torch.cat((prompts[r], tokens[r, :count - 1]))[None]
        logits[r, :count] = reference(sequence)[0, prompts.shape[1] - 1:]
    return logits[:, :width]


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Per step, the weights once and the whole static cache once, at the expected number of steps (max_new: the
    longest request); tokens = the expected tokens kept, batch x 3/4 max_new."""
    hidden, layers, batch, prompt_len, max_new = shape
    cfg = config(hidden, layers)
    size = torch_dtype(dtype).itemsize
    weights = layers * cfg.params_per_layer + cfg.vocab * hidden
    cache = 2 * layers * batch * cfg.kv_width * (prompt_len + max_new)
    flops = 2 * batch * (weights + 2 * layers * cfg.q_width * (prompt_len + max_new))
    return Work(bytes=float(size * max_new * (weights + cache)), flops=float(max_new * flops),
                items=batch * 0.75 * max_new, item_name="tokens")
