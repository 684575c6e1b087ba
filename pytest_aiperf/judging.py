"""Judge one measurement of a case: pure Python over its samples, so every rule is tested without a device.

- The samples must be valid: an arm whose events are far shorter than its wall time left work on a side stream.
- The speedup's interval is judged against the gate (``verdict.judge``); a throttled GPU or a host unlike the
  recording hosts turns a fall into INCONCLUSIVE.
- The memory goal judges the ratio of the arms' peak bytes instead, and the time cost of the win against the case's
  ``max_slowdown``: a memory win slower than declared fails on its own reason.
- A time goal's ``max_memory_growth`` bounds the optimized arm's peak memory against the baseline's: a win past it is
  REGRESSED.
- A latency case's ``guards`` bound its other request metrics: a gated win that breaks one is REGRESSED.
- A workload unlike the recording's (``Case.workload`` statistics beyond ``workload_tolerance``) cannot show a
  regression or an improvement of the code: any verdict against an expectation reads INCONCLUSIVE, naming both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from pytest_aiperf.cases import CaseParam
from pytest_aiperf.stats import SpeedupEstimate, arm_stats, noise_margin, side_stream_suspect, speedup_ci
from pytest_aiperf.verdict import Expected, Gate, Outcome, Verdict, judge, workload_shift


class MeasurementError(AssertionError):
    """The measurement itself is invalid (work escaped the timed stream)."""


class NoPeakMemory(Exception):
    """The memory goal was asked of a timing backend that cannot track peak memory."""


@dataclass(frozen=True)
class Judgement:
    """A measurement judged against its gate. ``time_speedup``: for the memory goal, the time ratio of the arms
    (baseline / optimized) with its interval, beside the memory ratio that ``estimate`` holds."""

    estimate: SpeedupEstimate
    verdict: Verdict
    noise_margin: float
    host_change: str | None
    time_speedup: SpeedupEstimate | None = None


def judged(param: CaseParam, base_ms: Sequence[float], opt_ms: Sequence[float], *, base_wall_ms: Sequence[float],
           opt_wall_ms: Sequence[float], expected: Expected | None, gate: Gate, hardware: str, min_margin: float,
           peaks: dict[str, int | None] | None = None, throttle: Sequence[str] = (),
           host_change: str | None = None, workload: dict[str, float] | None = None,
           latency: dict[str, dict[str, float] | None] | None = None) -> Judgement:
    """The judgement of one measurement's paired samples (ms), see the module docstring."""
    __tracebackhide__ = True
    for arm, events, walls in (("baseline", base_ms, base_wall_ms), ("optimized", opt_ms, opt_wall_ms)):
        suspect = side_stream_suspect(events, walls)
        if suspect:
            raise MeasurementError(f"{arm} arm of {param.id}: {suspect}. Work escaped the current stream: join side "
                                   f"streams (torch.cuda.current_stream().wait_stream(s)) before returning")
    case = param.case
    medians = dict(baseline_ms=arm_stats(base_ms).median_ms, optimized_ms=arm_stats(opt_ms).median_ms)
    times = speedup_ci(base_ms, opt_ms)
    if case.goal == "memory":
        judgement = _memory(param, peaks or {}, times, expected, gate, hardware, min_margin, medians)
    else:
        verdict = judge(times, gate, expected=expected, throttle=throttle, host_change=host_change,
                        hardware=hardware, **medians)
        judgement = Judgement(times, verdict, noise_margin(base_ms, opt_ms, floor=min_margin), host_change)
        if case.max_memory_growth is not None:
            judgement = _memory_ceiling(judgement, case.memory, case.max_memory_growth, peaks or {})
    broken = guard_broken(case.guards, latency or {})
    if broken and judgement.verdict.outcome is not Outcome.REGRESSED:
        judgement = Judgement(judgement.estimate, Verdict(Outcome.REGRESSED, f"{broken}; {judgement.verdict.reason}"),
                              judgement.noise_margin, judgement.host_change, judgement.time_speedup)
    shift = workload_shift(expected.workload if expected else None, workload, case.workload_tolerance)
    if shift and judgement.verdict.outcome is not Outcome.INCONCLUSIVE:
        verdict = Verdict(Outcome.INCONCLUSIVE, f"{shift}: the speedup was recorded at another workload, so this run "
                                                f"cannot show a change of the code ({judgement.verdict.reason})")
        judgement = Judgement(judgement.estimate, verdict, judgement.noise_margin, judgement.host_change,
                              judgement.time_speedup)
    return judgement


def guard_broken(guards: Sequence[Any], latency: dict[str, dict[str, float] | None]) -> str | None:
    """The first ``Guard`` the optimized arm breaks, as a sentence, given both arms' request metrics (medians over
    calls, ``latency.Latency.summary``); None when every guard holds or no metrics were measured."""
    base, opt = latency.get("baseline"), latency.get("optimized")
    if not base or not opt:
        return None
    for guard in guards:
        before, after = base[guard.metric], opt[guard.metric]
        worse = before / after if guard.metric == "tokens_per_s" else after / before
        if worse > guard.max_worse:
            return (f"the guard on {guard.metric} is broken: {before:.4g} -> {after:.4g}, {worse:.2f}x worse, past its "
                    f"declared {guard.max_worse:.2f}x")
    return None


def _memory_ceiling(judgement: Judgement, kind: str, limit: float, peaks: dict[str, int | None]) -> Judgement:
    """A time goal's judgement under its memory ceiling: REGRESSED where the optimized arm's peak is past ``limit``
    times the baseline's, the peaks named in the reason either way (or that the backend could not track them)."""
    base, opt = peaks.get("baseline"), peaks.get("optimized")
    verdict = judgement.verdict
    if not base or not opt:
        verdict = Verdict(verdict.outcome, f"{verdict.reason}; peak memory not tracked by this timing backend, so "
                                           f"max_memory_growth {limit:.2f}x was not checked")
    elif opt > limit * base:
        verdict = Verdict(Outcome.REGRESSED, f"the optimized arm's peak {kind} memory {opt} bytes is {opt / base:.2f}x "
                                             f"the baseline's {base}, past the declared max_memory_growth "
                                             f"{limit:.2f}x; {verdict.reason}")
    else:
        verdict = Verdict(verdict.outcome, f"{verdict.reason}; peak {kind} memory {base} -> {opt} bytes "
                                           f"({opt / base:.2f}x) within max_memory_growth {limit:.2f}x")
    return Judgement(judgement.estimate, verdict, judgement.noise_margin, judgement.host_change,
                     judgement.time_speedup)


def _memory(param: CaseParam, peaks: dict[str, int | None], times: SpeedupEstimate, expected: Expected | None,
            gate: Gate, hardware: str, min_margin: float, medians: dict[str, Any]) -> Judgement:
    base, opt = peaks.get("baseline"), peaks.get("optimized")
    if not base or not opt:
        raise NoPeakMemory(f"{param.id}: the memory goal needs peak-memory tracking, which this timing backend lacks")
    ratio = base / opt
    est = SpeedupEstimate(speedup=ratio, lo=ratio, hi=ratio, confidence=1.0, rounds=times.rounds)
    verdict = judge(est, gate, expected=expected, hardware=hardware, **medians)
    reason = f"peak {param.case.memory} memory {base} -> {opt} bytes; {verdict.reason}"
    limit = param.case.max_slowdown
    if limit is not None and times.hi < 1 / limit and verdict.outcome is not Outcome.REGRESSED:
        verdict = Verdict(Outcome.REGRESSED, (
            f"the optimized arm is {1 / times.speedup:.2f}x slower than the baseline (time ratio {times.speedup:.2f}x "
            f"[{times.lo:.2f}, {times.hi:.2f}]), past the declared max_slowdown {limit:.2f}x; {reason}"))
    else:
        slowdown = f"time ratio {times.speedup:.2f}x [{times.lo:.2f}, {times.hi:.2f}]" + (
            f" within max_slowdown {limit:.2f}x" if limit is not None else "")
        verdict = Verdict(verdict.outcome, f"{reason}; {slowdown}")
    return Judgement(est, verdict, min_margin, None, time_speedup=times)
