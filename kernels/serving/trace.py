"""Seeded request traces for the serving engine: when each request arrives, its prompt tokens, and how many tokens
it generates.

Design reference: the synthetic workloads of vLLM's ``benchmark_serving`` (Poisson arrivals at a request rate, or
all at t=0 for offline throughput) and SGLang's generated shared-prefix benchmark (groups of requests sharing a long
prefix). Lengths are lognormal, clipped to a range: a heavy right tail, the spread that makes a static batch wait
for its longest request. Output lengths are fixed by the trace and EOS is ignored, so every arm generates exactly
the same number of tokens per request and differs only in how it schedules them.

Everything is drawn from one CPU generator (``kernels.seeded``) in a fixed order: lengths, then arrival gaps, then
token ids, so a trace depends only on its arguments. ``Trace.digest`` hashes the requests (arrival times to the
nanosecond, prompts, output lengths, groups) for ids and provenance.

Cost model: none on the device; drawing a trace is O(total prompt tokens) on the host, outside any timed region.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import torch

from kernels import seeded


@dataclass(frozen=True)
class Request:
    """One request: ``arrival_s`` after the trace starts, its ``prompt`` token ids, ``output_len`` tokens to
    generate, and its shared-prefix ``group`` (-1 for none)."""

    arrival_s: float
    prompt: tuple[int, ...]
    output_len: int
    group: int = -1


@dataclass(frozen=True)
class Trace:
    """Requests in arrival order, and how they were drawn (``kind``, ``seed``)."""

    requests: tuple[Request, ...]
    kind: str
    seed: int

    def __len__(self) -> int:
        return len(self.requests)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(r.prompt) for r in self.requests)

    @property
    def output_tokens(self) -> int:
        return sum(r.output_len for r in self.requests)

    def to_json(self) -> dict:
        return {"kind": self.kind, "seed": self.seed,
                "requests": [[round(r.arrival_s * 1e9), list(r.prompt), r.output_len, r.group] for r in self.requests]}

    def digest(self) -> str:
        """A stable 16-hex-digit hash of the requests and how they were drawn."""
        text = json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LogNormal:
    """Lengths ``round(median x exp(sigma x N(0, 1)))`` clipped to [low, high]; sigma 0 gives the median."""

    median: float
    sigma: float
    low: int
    high: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.median <= self.high or self.sigma < 0:
            raise ValueError(f"LogNormal needs 1 <= low <= median <= high and sigma >= 0, got {self}")

    def draw(self, gen: torch.Generator, count: int) -> list[int]:
        normal = torch.randn(count, generator=gen, dtype=torch.float64)
        lengths = (math.log(self.median) + self.sigma * normal).exp().round()
        return [int(n) for n in lengths.clamp(self.low, self.high)]


Lengths = LogNormal | int


def _lengths(spec: Lengths, gen: torch.Generator, count: int) -> list[int]:
    if isinstance(spec, int):
        if spec < 1:
            raise ValueError(f"a fixed length must be at least 1, got {spec}")
        return [spec] * count
    return spec.draw(gen, count)


def _arrivals(rate: float | None, gen: torch.Generator, count: int) -> list[float]:
    """All zeros offline (``rate`` None); else a Poisson process of ``rate`` requests/s: exponential gaps, the
    first request at its first gap."""
    if rate is None:
        return [0.0] * count
    if rate <= 0:
        raise ValueError(f"the arrival rate must be positive, got {rate}")
    gaps = -torch.log1p(-torch.rand(count, generator=gen, dtype=torch.float64)) / rate
    return [float(t) for t in gaps.cumsum(0)]


def synthetic_trace(count: int, prompt_len: Lengths, output_len: Lengths, vocab: int, seed: int, *,
                    rate: float | None = None) -> Trace:
    """``count`` requests with prompts of ``prompt_len`` uniform random tokens and ``output_len`` outputs, all at
    t=0 (offline) or arriving as a Poisson process of ``rate`` requests/s (online)."""
    gen = seeded(seed)
    prompts, outputs = _lengths(prompt_len, gen, count), _lengths(output_len, gen, count)
    arrivals = _arrivals(rate, gen, count)
    tokens = torch.randint(0, vocab, (sum(prompts),), generator=gen).tolist()
    requests, at = [], 0
    for arrival, length, out in zip(arrivals, prompts, outputs):
        requests.append(Request(arrival, tuple(tokens[at:at + length]), out))
        at += length
    return Trace(tuple(requests), "online" if rate else "offline", seed)


def shared_prefix_trace(groups: int, per_group: int, prefix_len: int, suffix_len: Lengths, output_len: Lengths,
                        vocab: int, seed: int, *, rate: float | None = None) -> Trace:
    """``groups`` x ``per_group`` requests: each group shares one ``prefix_len``-token prefix (a system prompt or
    document), each request adds its own ``suffix_len`` tokens; requests of all groups are shuffled together, then
    given arrival times as in ``synthetic_trace``."""
    gen = seeded(seed)
    count = groups * per_group
    suffixes, outputs = _lengths(suffix_len, gen, count), _lengths(output_len, gen, count)
    arrivals = _arrivals(rate, gen, count)
    prefixes = torch.randint(0, vocab, (groups, prefix_len), generator=gen).tolist()
    tokens = torch.randint(0, vocab, (sum(suffixes),), generator=gen).tolist()
    order = torch.randperm(count, generator=gen).tolist()
    requests, at = [], 0
    for arrival, index in zip(arrivals, order):
        group, length = index // per_group, suffixes[index]
        prompt = tuple(prefixes[group]) + tuple(tokens[at:at + length])
        requests.append(Request(arrival, prompt, outputs[index], group))
        at += length
    return Trace(tuple(requests), "shared_prefix_online" if rate else "shared_prefix_offline", seed)
