"""Schedulers of the serving engine: which tokens of which requests the next model step runs.

Every policy sees the same state: ``waiting`` (arrived, not running, in arrival order; preempted requests go back
to its front), ``running`` (in admission order: earlier means higher priority), the KV pool and an optional prefix
cache. A sequence is its known tokens (prompt, then generated) and how many of them have keys and values in the pool
(``computed``): a step runs some of the rest as a chunk, and a chunk that reaches the last known token samples the
next one. A prefill, a chunk of it, a decode and a recompute after preemption are all such chunks.

- ``StaticBatching``: the ``generate`` loop of a padded batch (Hugging Face, FasterTransformer). When nothing runs,
  take up to ``max_batch`` waiting requests in arrival order, as many as the pool can hold at prompt + the batch's
  longest output - 1 tokens each, and reserve that; prefill them in one step, then decode every row until the longest is done. Rows
  that finish keep computing (their tokens are discarded, counted in ``discarded_tokens``), and the next batch
  waits for the whole batch. Prompts are packed, not padded: the only padding is the finished rows' steps, the
  waste continuous batching removes (padded prefill is a separate lesson). Tokens count as visible when their step
  produces them (a streaming client), not when the batch returns.
- ``ContinuousBatching``: Orca's iteration-level scheduling as vLLM v0 runs it by default. Every step, first admit
  waiting requests while a slot (``max_batch``) and the pool allow; if any were admitted the step prefills their
  whole prompts (running decodes wait for it); otherwise every running sequence decodes one token. A finished
  sequence frees its slot and blocks before the next step.
- ``ChunkedPrefill``: Sarathi-Serve's stall-free batching (Agrawal et al., OSDI 2024): each step takes every running
  decode first, then continues partial prefills, then admits new requests, all within a ``token_budget`` of tokens
  per step; prompts longer than what is left of the budget are split into chunks over several steps. As in vLLM
  v1, a step that had to preempt admits nobody.

Admission is limited by the pool: a request is admitted only if the pool has room for the tokens it computes now
(after a prefix hit, which it adopts). When a running sequence cannot grow, the lowest-priority sequence not yet
scheduled this step is preempted by recompute (vLLM's default): its blocks are freed, and when it is admitted again
its prompt and generated tokens are prefilled anew; the tokens it already returned stay returned.

Cost model: host only, per step O(running sequences + admitted requests); the prefix lookup is O(prompt tokens)
per admission (``kernels.serving.prefix``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from kernels.serving.engine import Chunk
from kernels.serving.kv import KVPool
from kernels.serving.metrics import ServeStats
from kernels.serving.prefix import BlockHashCache, RadixCache


@dataclass(eq=False)
class Seq:
    """A request being served: its ``tokens`` (prompt, then generated), ``computed`` of them in the pool, and whether
    it is ``active`` (in ``running``)."""

    index: int
    prompt_len: int
    output_len: int
    tokens: list[int]
    computed: int = 0
    active: bool = False

    @property
    def generated(self) -> int:
        return len(self.tokens) - self.prompt_len

    @property
    def pending(self) -> int:
        """Known tokens without keys and values in the pool (1 for a decode)."""
        return len(self.tokens) - self.computed

    @property
    def done(self) -> bool:
        return self.generated >= self.output_len

    def chunk(self, count: int) -> Chunk:
        end = self.computed + count
        return Chunk(self.index, self.tokens[self.computed:end], self.computed, end == len(self.tokens))


@dataclass(eq=False)
class ServeState:
    """What a scheduler decides on: the queues, the pool, the prefix cache (or None), and the run's statistics."""

    pool: KVPool
    prefix: BlockHashCache | RadixCache | None
    stats: ServeStats
    waiting: deque[Seq] = field(default_factory=deque)
    running: list[Seq] = field(default_factory=list)

    def admit(self, seq: Seq, budget: int | None = None) -> int:
        """Admit ``seq``, the head of ``waiting``: adopt its cached prefix, make room for its next chunk (all its
        pending tokens, or ``budget`` of them); the chunk's length, or 0 (nothing changed) when the pool is full."""
        hit = self.prefix.match(seq.tokens) if self.prefix is not None else []
        pending = len(seq.tokens) - len(hit) * self.pool.block_size
        count = pending if budget is None else min(pending, budget)
        tokens = len(seq.tokens) - pending + count
        if not (self.pool.can_adopt(hit, tokens) if hit else self.pool.can_admit([tokens])):
            return 0
        if hit:
            self.pool.adopt(seq.index, hit)
        self.pool.ensure(seq.index, tokens)
        seq.computed = len(seq.tokens) - pending
        self.stats.prefix_hit_tokens += seq.computed
        self.start(seq)
        return count

    def make_room(self, seq: Seq, tokens: int, scheduled: set[Seq]) -> bool:
        """Room for ``seq``'s first ``tokens`` tokens, preempting the lowest-priority running sequences not yet
        scheduled this step; False when ``seq`` itself was the one preempted."""
        while not self.pool.ensure(seq.index, tokens):
            victim = next(s for s in reversed(self.running) if s not in scheduled)
            self.preempt(victim)
            if victim is seq:
                return False
        return True

    def start(self, seq: Seq) -> None:
        """Move ``seq``, the head of ``waiting``, to the end of ``running``."""
        self.waiting.popleft()
        self.running.append(seq)
        seq.active = True

    def preempt(self, seq: Seq) -> None:
        self.pool.free(seq.index)
        seq.computed, seq.active = 0, False
        self.running.remove(seq)
        self.waiting.appendleft(seq)
        self.stats.preemptions += 1

    def retire(self, seqs: list[Seq]) -> None:
        for seq in seqs:
            self.pool.free(seq.index)
            seq.active = False
        if seqs:
            self.running = [seq for seq in self.running if seq.active]


class StaticBatching:
    """Generate-style batches of up to ``max_batch`` requests, run until their longest output is done."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch, self.longest = max_batch, 0

    def schedule(self, state: ServeState) -> list[Chunk]:
        if not state.running:
            self._form(state)
        return [seq.chunk(seq.pending) for seq in state.running]

    def _form(self, state: ServeState) -> None:
        pool, batch, longest = state.pool, [], 0
        for seq in state.waiting:
            if len(batch) == self.max_batch:
                break
            trial = max(longest, seq.output_len)
            if not pool.can_admit([s.prompt_len + trial - 1 for s in (*batch, seq)]):
                break
            batch.append(seq)
            longest = trial
        for seq in batch:
            pool.ensure(seq.index, seq.prompt_len + longest - 1)
            state.start(seq)
        self.longest = longest

    def finished(self, state: ServeState) -> list[Seq]:
        if state.running and all(seq.generated >= self.longest for seq in state.running):
            return list(state.running)
        return []


class ContinuousBatching:
    """Iteration-level scheduling with whole-prompt prefill steps, up to ``max_batch`` running sequences."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch

    def schedule(self, state: ServeState) -> list[Chunk]:
        chunks = []
        while state.waiting and len(state.running) < self.max_batch:
            seq = state.waiting[0]
            count = state.admit(seq)
            if not count:
                break
            chunks.append(seq.chunk(count))
        if chunks:
            return chunks
        scheduled: set[Seq] = set()
        for seq in list(state.running):
            if seq.active and state.make_room(seq, seq.computed + 1, scheduled):
                chunks.append(seq.chunk(1))
                scheduled.add(seq)
        return chunks

    def finished(self, state: ServeState) -> list[Seq]:
        return [seq for seq in state.running if seq.done]


class ChunkedPrefill:
    """Stall-free batching: decodes first, then prefill chunks, within ``token_budget`` tokens per step and
    ``max_batch`` running sequences."""

    def __init__(self, max_batch: int, token_budget: int) -> None:
        if token_budget < 1:
            raise ValueError(f"the token budget must be at least 1, got {token_budget}")
        self.max_batch, self.token_budget = max_batch, token_budget

    def schedule(self, state: ServeState) -> list[Chunk]:
        budget, chunks, scheduled = self.token_budget, [], set()
        preemptions = state.stats.preemptions
        decodes = [seq for seq in state.running if seq.pending == 1]
        prefills = [seq for seq in state.running if seq.pending > 1]
        for seq in decodes + prefills:
            if not budget:
                break
            if not seq.active:
                continue
            count = min(seq.pending, budget)
            if state.make_room(seq, seq.computed + count, scheduled):
                chunks.append(seq.chunk(count))
                scheduled.add(seq)
                budget -= count
        while budget and state.waiting and len(state.running) < self.max_batch \
                and state.stats.preemptions == preemptions:
            seq = state.waiting[0]
            count = state.admit(seq, budget)
            if not count:
                break
            chunks.append(seq.chunk(count))
            budget -= count
        return chunks

    def finished(self, state: ServeState) -> list[Seq]:
        return [seq for seq in state.running if seq.done]
