"""Ablations: extra arms of an end-to-end case, each the optimized stack with one technique removed, timed after the
verdict against the baseline and reported, never gated.

A case declares ``ablations={"no_prefix_cache": arm, ...}``. Every ablation arm is checked like the pair's arms
(``checks.verify``: the optimized arm's rule, or the declared tolerance, and the token check). Where the case is timed,
each one is measured after the pair's verdict by the pair's own loop (``measure.sample_pair``, the same clock,
options and budget) against the baseline again, its compilation timed apart as the arms' is (``arms.first_call``).
Its samples never reach the verdict or the expectation entry.

What an ablation tells: its speedup over the baseline (``baseline / ablated``, medians, with the bootstrap interval of
its paired rounds), and what the removed technique contributes, the full stack's speedup over the ablated one. Where
the techniques act independently their contributions multiply to the full speedup; ``product`` says how close they
come (a product above the full speedup: techniques that overlap, each claiming the same saved time; below: techniques
that need each other, as CUDA graphs need a compiled, static-shape step).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from pytest_aiperf import arms, latency, measure
from pytest_aiperf.stats import arm_stats, speedup_ci


def measured(clock: Any, baseline: Callable[..., Any], ablations: Mapping[str, Callable[..., Any]],
             inputs: Sequence[Any], arg_sets: Sequence[Sequence[Any]], *, budget_s: float,
             options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each ablation arm timed against ``baseline`` (the pair's timed baseline) with ``measure.sample_pair`` and no
    gate: its record, in declaration order (``entry``)."""
    out = {}
    for name, arm in ablations.items():
        call = arms.timed(arm, inputs)
        first = arms.first_call(call, inputs, clock.sync)
        samples = measure.sample_pair(clock, baseline, call, arg_sets, budget_s=budget_s, gate=None, **options)
        summary = clock.summary(call) if isinstance(clock, latency.Latency) else None
        out[name] = entry(samples.base_ms, samples.opt_ms, first_call_ms=first.ms, compiled_graphs=first.graphs,
                          latency=summary)
    return out


def entry(base_ms: Sequence[float], ablated_ms: Sequence[float], *, first_call_ms: float | None = None,
          compiled_graphs: int = 0, latency: dict[str, float] | None = None) -> dict[str, Any]:
    """One ablation's record (JSON-native): ``speedup`` over the baseline and its ``ci``, the ``rounds`` paired,
    both medians, the first call's wall time and graphs compiled, and for a latency case the request metrics."""
    estimate = speedup_ci(base_ms, ablated_ms)
    return {"speedup": float(estimate.speedup), "ci": [float(estimate.lo), float(estimate.hi)],
            "rounds": int(estimate.rounds), "median_ms": float(arm_stats(ablated_ms).median_ms),
            "baseline_median_ms": float(arm_stats(base_ms).median_ms),
            "first_call_ms": None if first_call_ms is None else float(first_call_ms),
            "compiled_graphs": int(compiled_graphs), "latency": latency}


def contributions(full: float, ablated: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """What each removed technique contributes: the full stack's speedup over the stack without it."""
    return {name: full / rec["speedup"] for name, rec in ablated.items() if rec.get("speedup")}


def product(full: float, ablated: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The contributions multiplied: the full speedup if the techniques act independently (None without any)."""
    parts = contributions(full, ablated)
    return math.prod(parts.values()) if parts else None
