"""Judging one measurement: the memory goal with its time cost, and a workload unlike the recording's."""

from __future__ import annotations

import pytest

from pytest_aiperf import Case
from pytest_aiperf.judging import NoPeakMemory, judged
from pytest_aiperf.verdict import Expected, Outcome, gate_for


def case(**fields) -> Case:
    return Case(name="toy", baseline=lambda x: x, optimized=lambda x: x, inputs=lambda *a: (), time_shapes=[(8,)],
                check_shapes=[(2,)], **fields)


def judge_case(c: Case, base: float, opt: float, expected: Expected | None = None, **kw):
    param = c.params()[0]
    base_ms, opt_ms = [base * (1 + 0.001 * (i % 3)) for i in range(30)], [opt * (1 + 0.001 * (i % 2)) for i in range(30)]
    return judged(param, base_ms, opt_ms, base_wall_ms=base_ms, opt_wall_ms=opt_ms, expected=expected,
                  gate=gate_for(expected, c.min_speedup, c.known_loss), hardware="h200", min_margin=0.03, **kw)


def test_a_memory_win_within_its_declared_slowdown_passes_and_keeps_its_time_ratio() -> None:
    c = case(goal="memory", max_slowdown=1.45, min_speedup=2.0)
    result = judge_case(c, 1.0, 1.3, peaks={"baseline": 8_000, "optimized": 2_000})
    assert result.verdict.outcome is Outcome.PASS and result.estimate.speedup == 4.0
    assert result.time_speedup.speedup == pytest.approx(1 / 1.3, rel=0.01)
    assert "within max_slowdown 1.45x" in result.verdict.reason


def test_a_memory_win_slower_than_declared_fails_on_its_time_cost() -> None:
    c = case(goal="memory", max_slowdown=1.45, min_speedup=2.0)
    result = judge_case(c, 1.0, 2.0, peaks={"baseline": 8_000, "optimized": 2_000})
    assert result.verdict.outcome is Outcome.REGRESSED
    assert "2.00x slower than the baseline" in result.verdict.reason and "max_slowdown 1.45x" in result.verdict.reason


def test_the_memory_goal_without_peak_tracking_says_so() -> None:
    with pytest.raises(NoPeakMemory, match="peak-memory tracking"):
        judge_case(case(goal="memory"), 1.0, 1.0, peaks={"baseline": None, "optimized": None})


def test_a_workload_unlike_the_recordings_reads_inconclusive_naming_both_values() -> None:
    c = case(workload=lambda: {}, workload_tolerance=0.05)
    expected = Expected(3.0, 0.05, workload={"acceptance_rate": 0.72})
    moved = judge_case(c, 1.0, 0.5, expected, workload={"acceptance_rate": 0.55})
    assert moved.verdict.outcome is Outcome.INCONCLUSIVE
    assert "acceptance_rate 0.55 (recorded 0.72)" in moved.verdict.reason
    same = judge_case(c, 3.0, 1.0, expected, workload={"acceptance_rate": 0.71})
    assert same.verdict.outcome is Outcome.PASS


def test_max_slowdown_belongs_to_the_memory_goal() -> None:
    with pytest.raises(ValueError, match="max_slowdown"):
        case(max_slowdown=1.2)


def test_a_latency_win_that_breaks_a_guard_fails_on_the_guard() -> None:
    from pytest_aiperf import Guard

    c = case(goal="latency", metric="tpot_p99", guards=(Guard("ttft_p50", 1.2), Guard("tokens_per_s", 1.05)))
    fine = {"baseline": {"ttft_p50": 100.0, "tokens_per_s": 900.0}, "optimized": {"ttft_p50": 110.0,
                                                                                 "tokens_per_s": 880.0}}
    assert judge_case(c, 3.0, 1.0, latency=fine).verdict.outcome is Outcome.PASS
    slow_first = {**fine, "optimized": {"ttft_p50": 150.0, "tokens_per_s": 900.0}}
    broken = judge_case(c, 3.0, 1.0, latency=slow_first)
    assert broken.verdict.outcome is Outcome.REGRESSED
    assert broken.verdict.reason.startswith("the guard on ttft_p50 is broken: 100 -> 150, 1.50x worse, past its "
                                            "declared 1.20x")
    fewer_tokens = {**fine, "optimized": {"ttft_p50": 100.0, "tokens_per_s": 800.0}}
    assert "the guard on tokens_per_s is broken" in judge_case(c, 3.0, 1.0, latency=fewer_tokens).verdict.reason


def test_guards_belong_to_latency_cases_and_bound_known_metrics() -> None:
    from pytest_aiperf import Guard

    with pytest.raises(ValueError, match="guards are Guard objects of a latency case"):
        case(guards=(Guard("ttft_p50", 1.2),))
    with pytest.raises(ValueError, match="max_worse >= 1"):
        Guard("ttft_p90", 1.2)


def test_a_speed_win_past_its_memory_ceiling_fails_on_the_memory_it_costs() -> None:
    c = case(max_memory_growth=1.5, min_speedup=1.1)
    held = judge_case(c, 1.2, 1.0, peaks={"baseline": 4_000, "optimized": 5_000})
    assert held.verdict.outcome is Outcome.PASS and "(1.25x) within max_memory_growth 1.50x" in held.verdict.reason
    broken = judge_case(c, 1.2, 1.0, peaks={"baseline": 4_000, "optimized": 8_000})
    assert broken.verdict.outcome is Outcome.REGRESSED
    assert "2.00x the baseline's 4000, past the declared max_memory_growth 1.50x" in broken.verdict.reason
    untracked = judge_case(c, 1.2, 1.0, peaks={"baseline": None, "optimized": None})
    assert untracked.verdict.outcome is Outcome.PASS and "was not checked" in untracked.verdict.reason


def test_max_memory_growth_belongs_to_a_time_goal() -> None:
    with pytest.raises(ValueError, match="max_memory_growth"):
        case(goal="memory", max_memory_growth=1.5)
