"""Replay a request trace through the serving engine: the loop a server runs, and the one call a serving case makes.

Design reference: the engine core loop of vLLM v1 (schedule, execute the model, update the requests from its output)
and gpt-fast's greedy generation. Arrivals are replayed on the wall clock: request i joins the waiting queue once
``arrival_s`` has passed since the run began (offline traces arrive at once); with nothing to run, the loop sleeps
until the next arrival. Each step: the scheduler picks chunks, the engine prepares and runs them, the sampled
tokens are read back (one device sync), each token within its request's output length is recorded in the
``Timeline`` at that host time, and finished sequences free their KV.

``serve`` returns ``Served(tokens, timeline, stats)``: per request (in trace order) its generated token ids, the
``pytest_aiperf.latency.Timeline`` of arrivals (run start + ``arrival_s``) and token times, and ``ServeStats``.

Cost model: one model step per iteration (``kernels.serving.engine``), the scheduler's host work
(``kernels.serving.scheduler``), and one device-to-host copy of the sampled tokens.
"""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple, Protocol

from pytest_aiperf.latency import Timeline

from kernels.llm.model import Decoder
from kernels.serving.engine import Chunk, Engine
from kernels.serving.kv import KVPool, PagedPool
from kernels.serving.metrics import ServeStats
from kernels.serving.prefix import BlockHashCache, RadixCache
from kernels.serving.scheduler import Seq, ServeState, StaticBatching
from kernels.serving.trace import Trace


class Scheduler(Protocol):
    def schedule(self, state: ServeState) -> list[Chunk]: ...

    def finished(self, state: ServeState) -> list[Seq]: ...


class Served(NamedTuple):
    tokens: list[list[int]]
    timeline: Timeline
    stats: ServeStats


def serve(trace: Trace, model: Decoder, pool: KVPool, scheduler: Scheduler, *,
          prefix: BlockHashCache | RadixCache | None = None, attention: str = "paged",
          splits: int | None = None, engine: Engine | None = None) -> Served:
    """Serve every request of ``trace`` with ``model`` on ``pool`` under ``scheduler`` (and ``prefix``, a cache on
    ``pool``); ``attention`` picks the decode attention ("paged": the Triton kernel, "gather": gather + SDPA), or
    ``engine`` gives the model step itself (an ``Engine`` of ``model`` on ``pool``, e.g. one that replays graphs). The
    pool and the cache keep what the run leaves (free blocks, cached prefixes): reset both between timed runs. The
    pool's peaks restart at its holdings when the run begins, so ``stats`` reports this run's."""
    if prefix is not None and (not isinstance(pool, PagedPool) or prefix.pool is not pool):
        raise ValueError("a prefix cache works on the paged pool it was built on")
    if prefix is not None and isinstance(scheduler, StaticBatching):
        raise ValueError("static batching reserves whole batches up front and takes no prefix cache")
    if engine is None:
        engine = Engine(model, pool, attention, splits)
    elif engine.model is not model or engine.pool is not pool:
        raise ValueError("the engine given to serve must run the served model on the served pool")
    stats = ServeStats(requests=len(trace), prompt_tokens=trace.prompt_tokens, output_tokens=trace.output_tokens,
                       kv_capacity_bytes=pool.capacity_bytes)
    state = ServeState(pool, prefix, stats)
    seqs = [Seq(i, len(r.prompt), r.output_len, list(r.prompt)) for i, r in enumerate(trace.requests)]
    arrivals = deque(sorted(seqs, key=lambda seq: trace.requests[seq.index].arrival_s))
    timeline, done = Timeline(), 0
    start = time.perf_counter()
    for request in trace.requests:
        timeline.add(start + request.arrival_s)
    pool.peak_reserved_tokens, pool.peak_used_tokens = pool.reserved_tokens, pool.used_tokens
    while done < len(seqs):
        now = time.perf_counter()
        while arrivals and start + trace.requests[arrivals[0].index].arrival_s <= now:
            state.waiting.append(arrivals.popleft())
        if not state.running and not state.waiting:
            wake = start + trace.requests[arrivals[0].index].arrival_s
            time.sleep(max(0.0, wake - now))
            stats.idle_s += time.perf_counter() - now
            continue
        chunks = scheduler.schedule(state)
        if not chunks:
            raise RuntimeError(f"nothing to run with {len(state.waiting)} requests waiting: the pool cannot hold "
                               f"request {state.waiting[0].index} ({len(state.waiting[0].tokens)} tokens) alone")
        scheduled = time.perf_counter()
        inputs = engine.prepare(chunks)
        prepared = time.perf_counter()
        sampled = engine.sample(inputs).tolist()
        visible = time.perf_counter()
        _advance(state, inputs.chunks, dict(zip(inputs.sampled, sampled)), seqs, timeline, visible)
        stats.steps += 1
        stats.peak_running = max(stats.peak_running, len(state.running))
        finished = scheduler.finished(state)
        state.retire(finished)
        done += len(finished)
        stats.schedule_s += (scheduled - now) + (time.perf_counter() - visible)
        stats.prepare_s += prepared - scheduled
        stats.model_s += visible - prepared
    stats.wall_s = time.perf_counter() - start
    stats.peak_reserved_bytes = pool.peak_reserved_tokens * pool.bytes_per_token
    stats.peak_used_bytes = pool.peak_used_tokens * pool.bytes_per_token
    return Served([seq.tokens[seq.prompt_len:seq.prompt_len + seq.output_len] for seq in seqs], timeline, stats)


def _advance(state: ServeState, chunks: list[Chunk], sampled: dict[int, int], seqs: list[Seq], timeline: Timeline,
             at: float) -> None:
    """Count the chunks' tokens as computed, append each sampled token, record those within the output length, and
    cache the prefixes of sequences whose prefill just completed."""
    stats = state.stats
    for chunk in chunks:
        seq = seqs[chunk.seq]
        seq.computed += len(chunk.tokens)
        decode = len(chunk.tokens) == 1 and chunk.start >= seq.prompt_len
        if decode:
            stats.decode_tokens += 1
        else:
            stats.prefill_tokens += len(chunk.tokens)
        if not chunk.sample:
            continue
        seq.tokens.append(sampled[chunk.seq])
        if seq.generated <= seq.output_len:
            timeline.tokens(seq.index, 1, at=at)
        else:
            stats.discarded_tokens += 1
        if state.prefix is not None and not decode:
            state.prefix.insert(seq.tokens[:seq.computed], state.pool.table(seq.index))
