"""Request-level latency of a serving arm: when each request arrived and when each of its tokens became visible to
the host (what a client sees), and the metrics a latency case is gated on.

An arm of a ``goal="latency"`` case returns its outputs and a ``Timeline`` (the checks compare the outputs and set
the timeline aside). ``Latency`` is the timing backend of such a case: it times one call, reads the timeline, and
returns the case's declared metric (``Case.metric``) as the sample, so the interleaved rounds, the bootstrap
interval and the gate work on it unchanged (speedup = baseline metric / optimized metric). Beside it, every call's
metrics and output tokens per second are kept per arm for the record.

A distributed serving arm runs on every rank and each rank's ``Timeline`` holds what that rank saw: every request's
arrival, and the tokens the rank itself emitted (a prefill rank the first token, a decode rank the rest). ``merged``
lines them up into the client's view; ranks on one host share ``time.perf_counter``'s clock (CLOCK_MONOTONIC).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

METRICS = ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "e2e_p50", "e2e_p99")


@dataclass
class Timeline:
    """Per request: ``arrival_s`` (when it was submitted) and ``token_s`` (when each output token was visible on the
    host), on one clock (``time.perf_counter``), in seconds. ``engine`` holds what the server measured about the
    replay itself (the share of step time its Python scheduler took, for example): reported beside the request
    metrics, never gated."""

    arrival_s: list[float] = field(default_factory=list)
    token_s: list[list[float]] = field(default_factory=list)
    engine: dict[str, float] = field(default_factory=dict)

    def add(self, arrival_s: float) -> int:
        """A new request; returns its index."""
        self.arrival_s.append(arrival_s)
        self.token_s.append([])
        return len(self.arrival_s) - 1

    def tokens(self, request: int, count: int = 1, at: float | None = None) -> None:
        """``count`` tokens of ``request`` became visible now (or ``at``)."""
        now = time.perf_counter() if at is None else at
        self.token_s[request].extend([now] * count)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between order statistics."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def metrics(timeline: Timeline) -> dict[str, float]:
    """TTFT (first token minus arrival), TPOT (mean time between a request's tokens after its first) and end-to-end
    latency, p50 and p99 over requests, in ms, output tokens per second over the timeline's span, and the engine's
    own statistics (``Timeline.engine``)."""
    served = [(a, t) for a, t in zip(timeline.arrival_s, timeline.token_s) if t]
    if not served:
        raise ValueError("the timeline has no request with a token")
    ttft = [1e3 * (tokens[0] - arrival) for arrival, tokens in served]
    tpot = [1e3 * (tokens[-1] - tokens[0]) / (len(tokens) - 1) for _, tokens in served if len(tokens) > 1]
    e2e = [1e3 * (tokens[-1] - arrival) for arrival, tokens in served]
    span = max(tokens[-1] for _, tokens in served) - min(arrival for arrival, _ in served)
    out = {"tokens_per_s": sum(len(tokens) for _, tokens in served) / span if span > 0 else float("inf")}
    for name, values in (("ttft", ttft), ("tpot", tpot or [0.0]), ("e2e", e2e)):
        out[f"{name}_p50"], out[f"{name}_p99"] = percentile(values, 50), percentile(values, 99)
    return {**out, **timeline.engine}


def merged(timelines: Sequence[Timeline]) -> Timeline:
    """The client's view of a request served across ranks: its earliest arrival over the ranks and the tokens every
    rank emitted for it, in time order. Every rank's timeline must list the same requests."""
    counts = {len(t.arrival_s) for t in timelines}
    if len(counts) != 1:
        raise ValueError(f"the ranks' timelines list different numbers of requests: {sorted(counts)}")
    out = Timeline()
    for request in range(counts.pop()):
        out.add(min(t.arrival_s[request] for t in timelines))
        out.token_s[request] = sorted(s for t in timelines for s in t.token_s[request])
    return out


def timeline_of(out: Any) -> Timeline:
    """The ``Timeline`` among an arm's outputs."""
    found = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, Timeline)]
    if len(found) != 1:
        raise TypeError(f"a latency arm returns its outputs and one Timeline, got {len(found)} timelines")
    return found[0]


class Latency:
    """The timing backend of a latency case: each call's sample is its ``metric`` in ms; ``calls[fn]`` keeps every
    call's metrics for the record. ``gather(timeline) -> timelines`` collects every rank's timeline of a call (a
    collective each rank makes in the same call) for a distributed case, whose metrics are then the merged
    timeline's."""

    def __init__(self, inner: Any, metric: str,
                 gather: Callable[[Timeline], Sequence[Timeline]] | None = None) -> None:
        if metric not in METRICS:
            raise ValueError(f"latency metric {metric!r} is not one of {METRICS}")
        self.inner, self.metric, self.gather = inner, metric, gather
        self.name, self.device, self.l2_bytes = f"{inner.name}+{metric}", inner.device, inner.l2_bytes
        self.calls: dict[Any, list[dict[str, float]]] = {}

    def flush(self) -> None:
        self.inner.flush()

    def sync(self) -> None:
        self.inner.sync()

    def time_call(self, fn: Callable[..., Any], args: Sequence[Any], hide_dispatch: bool = True) -> tuple[float, float]:
        self.inner.sync()
        out = fn(*args)
        self.inner.sync()
        timeline = timeline_of(out)
        found = metrics(merged(self.gather(timeline)) if self.gather is not None else timeline)
        self.calls.setdefault(fn, []).append(found)
        return found[self.metric], found[self.metric]

    def summary(self, fn: Callable[..., Any]) -> dict[str, float] | None:
        """The median of each metric over ``fn``'s calls (None before any)."""
        calls = self.calls.get(fn)
        if not calls:
            return None
        return {name: percentile([c[name] for c in calls], 50) for name in calls[0]}

    def peak_bytes(self, fn: Callable[..., Any], args: Sequence[Any], reserved: bool = False) -> int | None:
        return self.inner.peak_bytes(fn, args, reserved=reserved)

    def dispatch_note(self, fn: Callable[..., Any]) -> None:
        return None
