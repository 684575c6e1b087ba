"""What a serving run reports beside its tokens and its ``pytest_aiperf.latency.Timeline``: the work done, the KV
memory held, and where each step's time went on the host.

Design reference: vLLM's scheduler and iteration statistics (tokens per step, preemptions, prefix-cache hit rate,
KV usage) and the engine-overhead breakdown of its v1 redesign (scheduling and input preparation vs the model
forward).

A step's time is split at three host clock reads: ``schedule_s`` (the policy choosing chunks, admission, prefix
lookups, and after the step the bookkeeping: appending tokens, recording them, retiring sequences), ``prepare_s``
(building the step's packed inputs and copying them to the device) and ``model_s`` (from launching the forward until
its sampled tokens are on the host: one device sync per step, as a server does to stream tokens). ``idle_s`` is time
spent waiting for the next arrival with nothing to run; it is no step's. ``scheduler_share`` is the share of step
time outside the model forward: the engine overhead a faster GPU does not shrink.

Cost model: three ``time.perf_counter`` reads per step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ServeStats:
    """Counters of one serving run, in tokens summed over requests and KV cache bytes. ``decode_tokens`` are
    one-token chunks of a generated token, ``prefill_tokens`` every other token run (prompts, and generated tokens
    recomputed after a preemption); ``discarded_tokens`` were sampled past a request's output length."""

    requests: int = 0
    steps: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    discarded_tokens: int = 0
    prefix_hit_tokens: int = 0
    preemptions: int = 0
    peak_running: int = 0
    kv_capacity_bytes: int = 0
    peak_reserved_bytes: int = 0
    peak_used_bytes: int = 0
    schedule_s: float = 0.0
    prepare_s: float = 0.0
    model_s: float = 0.0
    idle_s: float = 0.0
    wall_s: float = 0.0

    @property
    def step_s(self) -> float:
        return self.schedule_s + self.prepare_s + self.model_s

    @property
    def scheduler_share(self) -> float:
        """Share of step time spent outside the model forward (scheduling and input preparation)."""
        return (self.schedule_s + self.prepare_s) / self.step_s if self.step_s else 0.0

    @property
    def prefix_hit_rate(self) -> float:
        """Tokens whose keys and values came from the prefix cache over those plus the tokens prefilled."""
        total = self.prefix_hit_tokens + self.prefill_tokens
        return self.prefix_hit_tokens / total if total else 0.0

    @property
    def tokens_per_step(self) -> float:
        """Tokens through the model per step (prefill, decode, recompute and discarded rows)."""
        return (self.prefill_tokens + self.decode_tokens) / self.steps if self.steps else 0.0

    def to_json(self) -> dict[str, float]:
        return {**asdict(self), "scheduler_share": self.scheduler_share, "prefix_hit_rate": self.prefix_hit_rate,
                "tokens_per_step": self.tokens_per_step}
