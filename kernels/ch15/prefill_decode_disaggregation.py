"""Prefill/decode disaggregation on two GPUs: two colocated replicas vs a prefill GPU handing each prompt's KV to a
decode GPU (DistServe, OSDI 2024; vLLM's and SGLang's disaggregated prefill).

- Baseline: two colocated replicas, one per GPU, each serving every other request of the trace (round-robin) with
  the chapter's best single-GPU scheduler, stall-free chunked prefill (``ChunkedPrefill``, the ``chunked_prefill``
  case's optimized arm): a step carries its running decodes and prompt chunks up to the token budget.
- Optimized: rank 0 only prefills: it admits the arrived requests' whole prompts, up to the token budget a step
  (a longer prompt alone), samples each one's first token, and sends the prompt's keys and values of every layer
  (``[layers, 2, prompt, kv_heads, head_dim]``, one message after its step) with the first token to rank 1, which
  only decodes: a receiving thread takes the messages as they come, and before each decode step rank 1 writes the
  arrived ones into its paged pool and adds them to its running batch.
- Mechanism: a decode step never waits for a prompt's chunks, so the time between tokens is a pure decode step;
  the price is one transfer per prompt and every prefill on one GPU (TTFT).

Both arms run the same model on the same seeded trace; every request's tokens, merged from both ranks, are checked
against the float64 reference (``kernels/ch15/serving_arms.py``). The metric is the merged client view
(``pytest_aiperf.latency.merged``): a request's TTFT from the rank that emitted its first token, its TPOT from the
rank that emitted the rest. Both arms end with the same exchange of every request's tokens between the ranks.

Shape ``(hidden, layers, requests, rate, max_batch, token_budget)``, two ranks. Timing shape
(4096, 4, 256, 80, 64, 2048): four Llama-3-8B layers with a 32000-token vocabulary, bf16; 256 requests arriving as
a Poisson process of 80 requests/s (~3.2 s), long prompts as in retrieval or summarization (lognormal, median 2,048,
sigma 0.6, 256-8,192 tokens; mean ~2,400), outputs lognormal (median 128, sigma 0.5, 32-256); at most 64 running
sequences a replica, and 128 on the decode rank (the sequences the two replicas would hold together).

Gated metric ``tpot_p99``; guarded: TTFT p50 at most 2.5x worse (one GPU prefills every prompt).

Why Llama-3-8B layers: the lesson needs a prompt chunk that costs more GPU time than a step's host dispatch. The
engine's eager step dispatches ~50 launches a layer, ~1.0-1.1 ms a layer at 15.5-21 us a launch (``serving_arms``);
a 2,048-token chunk of a Llama-3.2-1B layer (60.8 M parameters) is ~0.4 ms of GEMMs, hidden behind the host, while
one of a Llama-3-8B layer (218 M parameters, 0.44 GFLOP a token) is ~1.4 ms. The width sets that ratio, the layer
count does not (both costs grow per layer), so four layers keep a replay short.

Napkin math on H200s (4.8 TB/s, 4.25 measured; ~650 TFLOP/s bf16 dense; NCCL send/recv measured at 105-121 GB/s on 2
ranks by ``kernels/ch04/direct_peer_transfer.py``):
- a decode step: host-bound, ~4.2-4.4 ms (the weights and LM head, 1.75 GB, take ~0.4 ms to read); a mixed step with
  a 2,048-token chunk: ~5.5 ms of GEMMs plus ~0.4 ms of attention over a ~2.4 K context, ~6-6.5 ms, +40-50%.
- offered load: a replica prefills 40 requests/s x ~2,400 tokens, ~96 K tokens/s: ~47 budget-sized chunks a second
  among its ~190 steps, so ~25% of the steps a request decodes through are mixed: its mean gap ~+11%, and for the
  99th-percentile request (a binomial tail, ~34% mixed steps, long prompts' chunks in runs) ~+15-30%.
- disaggregated: the decode rank runs ~45 sequences (80/s x ~0.56 s of decode), every step a pure decode step; the
  prefill rank prefills ~192 K tokens/s, ~60% of its ~320 K tokens/s (whole prompts up to 2,048 tokens a step).
- the transfer: a 2,400-token prompt's KV is 4 layers x 2 x 2,400 x 8 x 128 x 2 B = 39 MB, ~0.36 ms at 110 GB/s,
  received on rank 1's own stream while it decodes.
- predicted TPOT p99: 1.15-1.3x lower; TTFT p50 1.3-2x worse (queueing on one prefill GPU at ~60% load, against a
  replica that starts a prompt's first chunk at its next step). DistServe's 2-4x goodput assumes GPU-bound steps
  (CUDA graphs, higher load, tuned prefill:decode GPU ratios); this eager engine hides part of each chunk behind the
  host's dispatch, and the case reports what that leaves.
- floor: ``min_speedup`` 1.05 (70% of the low end, 0.8, is below 1.05).

Not yet measured on a GPU.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from kernels.ch15.serving_arms import BLOCK, Deployment, padded, paged_pool, roomy, served_model
from kernels.llm import Decoder
from kernels.serving import ChunkedPrefill, Engine, LogNormal, PagedPool, Trace, serve, synthetic_trace
from kernels.serving.engine import Chunk
from pytest_aiperf import Guard, Stateful
from pytest_aiperf.latency import Timeline

GUARDS = (Guard("ttft_p50", 2.5),)
PROMPTS = {64: LogNormal(12, 0.6, 2, 40), 4096: LogNormal(2048, 0.6, 256, 8192)}
OUTPUTS = {64: LogNormal(4, 0.5, 1, 8), 4096: LogNormal(128, 0.5, 32, 256)}


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """An online trace of ``requests`` arriving as a Poisson process of ``rate`` requests/s with long prompts, the
    seeded model (the same on every rank), and a replica's deployment: ``max_batch`` of the longest sequences."""
    hidden, layers, requests, rate, max_batch, token_budget = shape
    model = served_model(hidden, layers, dtype, seed, device)
    trace = synthetic_trace(requests, PROMPTS[hidden], OUTPUTS[hidden], model.config.vocab, seed, rate=float(rate))
    return trace, model, roomy(trace, max_batch, BLOCK[hidden], token_budget=token_budget)


@dataclass(eq=False)
class Rank:
    """One rank's server: the trace, the model, its pool, and the deployment it was sized from."""

    trace: Trace
    model: Decoder
    deployment: Deployment
    pool: PagedPool
    sent: list[Any] = field(default_factory=list)

    @property
    def attention(self) -> str:
        return "paged" if self.model.device.type == "cuda" else "gather"


def _setup(trace: Trace, model: Decoder, deployment: Deployment) -> Rank:
    if dist.get_world_size() != 2:
        raise ValueError(f"the pair runs on 2 ranks, not {dist.get_world_size()}")
    doubled = Deployment(2 * deployment.max_batch, 2 * deployment.kv_tokens, deployment.max_len,
                         deployment.block_size, deployment.token_budget)
    return Rank(trace, model, deployment, paged_pool(model, doubled if dist.get_rank() == 1 else deployment))


def _reset(rank: Rank) -> None:
    rank.pool.reset()


def _exchanged(rank: Rank, tokens: dict[int, list[int]], timeline: Timeline) -> tuple[torch.Tensor, Timeline]:
    """Every request's tokens, from whichever rank holds them all, on every rank; and this rank's timeline."""
    held: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(held, tokens)
    merged = [max((h.get(i, []) for h in held), key=len) for i in range(len(rank.trace))]
    return padded(merged, rank.trace), timeline


def _colocated(rank: Rank) -> tuple[torch.Tensor, Timeline]:
    """This rank's replica serves requests rank, rank + 2, ... with chunked prefill."""
    me, world = dist.get_rank(), dist.get_world_size()
    mine = list(range(me, len(rank.trace), world))
    share = Trace(tuple(rank.trace.requests[i] for i in mine), rank.trace.kind, rank.trace.seed)
    deployment = rank.deployment
    out = serve(share, rank.model, rank.pool, ChunkedPrefill(deployment.max_batch, deployment.token_budget),
                attention=rank.attention)
    start = out.timeline.arrival_s[0] - share.requests[0].arrival_s
    timeline = Timeline()
    for request in rank.trace.requests:
        timeline.add(start + request.arrival_s)
    for index, times in zip(mine, out.timeline.token_s):
        timeline.token_s[index] = list(times)
    return _exchanged(rank, dict(zip(mine, out.tokens)), timeline)


def _slots(pool: PagedPool, seq: int, length: int) -> torch.Tensor:
    """Flat KV slots of ``seq``'s first ``length`` tokens."""
    position = torch.arange(length)
    blocks = pool.table_rows[pool.rows[seq], position // pool.block_size].long()
    return (blocks * pool.block_size + position % pool.block_size).to(pool.keys[0].device)


def _prefill_rank(rank: Rank, timeline: Timeline, start: float) -> dict[int, list[int]]:
    """Prefill whole prompts as they arrive, up to the token budget a step, and send each one's KV and first token."""
    engine, pool, requests = Engine(rank.model, rank.pool, rank.attention), rank.pool, rank.trace.requests
    device, first_tokens, arrived = rank.model.device, {}, 0
    while arrived < len(requests):
        now = time.perf_counter()
        if start + requests[arrived].arrival_s > now:
            time.sleep(start + requests[arrived].arrival_s - now)
            continue
        batch, tokens = [], 0
        while arrived < len(requests) and start + requests[arrived].arrival_s <= now and \
                (not batch or tokens + len(requests[arrived].prompt) <= rank.deployment.token_budget):
            batch.append(arrived)
            tokens += len(requests[arrived].prompt)
            arrived += 1
        for index in batch:
            pool.ensure(index, len(requests[index].prompt))
        ids, sampled = engine.prefill([Chunk(i, requests[i].prompt, 0, True) for i in batch])
        visible = time.perf_counter()
        for index, token in zip(ids, sampled):
            timeline.tokens(index, 1, at=visible)
            first_tokens[index] = [token]
            slots = _slots(pool, index, len(requests[index].prompt))
            kv = torch.stack([torch.stack((pool.keys[layer].flatten(0, 1)[slots],
                                           pool.values[layer].flatten(0, 1)[slots]))
                              for layer in range(len(pool.keys))])
            header = torch.tensor([index, token], device=device)
            rank.sent += [dist.isend(header, 1), dist.isend(kv, 1)]
            pool.free(index)
    for work in rank.sent:
        work.wait()
    rank.sent.clear()
    return first_tokens


def _receive(rank: Rank, arrivals: queue.Queue) -> None:
    """Rank 1's receiving thread: each prompt's header, then its KV, queued with an event that marks it arrived."""
    device, cfg, layers = rank.model.device, rank.model.config, len(rank.pool.keys)
    try:
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            side = torch.cuda.Stream() if device.type == "cuda" else None
            with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
                for _ in rank.trace.requests:
                    header = torch.empty(2, dtype=torch.long, device=device)
                    dist.recv(header, 0)
                    index, first = header.tolist()
                    prompt = len(rank.trace.requests[index].prompt)
                    kv = torch.empty(layers, 2, prompt, cfg.kv_heads, cfg.head_dim, dtype=rank.model.dtype,
                                     device=device)
                    dist.recv(kv, 0)
                    event = torch.cuda.Event() if side is not None else None
                    if event is not None:
                        event.record(side)
                    arrivals.put((index, first, kv, event))
    except BaseException as exc:  # the decode loop re-raises it instead of waiting forever
        arrivals.put(exc)


def _decode_rank(rank: Rank, timeline: Timeline) -> dict[int, list[int]]:
    """Admit the prompts whose KV arrived, then decode every running sequence one token; until every request ends."""
    engine, pool, requests = Engine(rank.model, rank.pool, rank.attention), rank.pool, rank.trace.requests
    arrivals: queue.Queue = queue.Queue()
    receiver = threading.Thread(target=_receive, args=(rank, arrivals), daemon=True)
    receiver.start()
    tokens: dict[int, list[int]] = {}
    running: list[int] = []
    waiting: list[Any] = []
    admitted = done = 0
    capacity = 2 * rank.deployment.max_batch
    while done < len(requests):
        while True:
            try:
                waiting.append(arrivals.get(block=not running and not waiting))
            except queue.Empty:
                break
        for item in list(waiting):
            if isinstance(item, BaseException):
                raise item
            index, first, kv, event = item
            if len(running) >= capacity or (event is not None and not event.query() and running):
                break
            waiting.remove(item)
            if event is not None:
                torch.cuda.current_stream().wait_event(event)
                kv.record_stream(torch.cuda.current_stream())
            request, admitted = requests[index], admitted + 1
            tokens[index] = [first]
            if request.output_len == 1:
                done += 1
                continue
            pool.ensure(index, len(request.prompt) + request.output_len)
            slots = _slots(pool, index, len(request.prompt))
            for layer in range(len(pool.keys)):
                pool.write(layer, slots, kv[layer, 0], kv[layer, 1])
            running.append(index)
        if not running:
            continue
        ids, sampled = engine.decode([Chunk(i, [tokens[i][-1]], len(requests[i].prompt) + len(tokens[i]) - 1, True)
                                      for i in running])
        visible = time.perf_counter()
        for index, token in zip(ids, sampled):
            tokens[index].append(token)
            timeline.tokens(index, 1, at=visible)
            if len(tokens[index]) == requests[index].output_len:
                pool.free(index)
                running.remove(index)
                done += 1
    receiver.join()
    return tokens


def _disaggregated(rank: Rank) -> tuple[torch.Tensor, Timeline]:
    """Rank 0 prefills, rank 1 decodes."""
    timeline, start = Timeline(), time.perf_counter()
    for request in rank.trace.requests:
        timeline.add(start + request.arrival_s)
    held = _prefill_rank(rank, timeline, start) if dist.get_rank() == 0 else _decode_rank(rank, timeline)
    return _exchanged(rank, held, timeline)


baseline_colocated_replicas = Stateful(setup=_setup, run=_colocated, reset=_reset)
optimized_disaggregated_prefill_decode = Stateful(setup=_setup, run=_disaggregated, reset=_reset)

