from __future__ import annotations

import pytest

from pytest_aiperf.stats import SpeedupEstimate
from pytest_aiperf.verdict import (
    AiperfWarning,
    Expected,
    Gate,
    ImprovedBeyondExpectation,
    InconclusiveMeasurement,
    Outcome,
    Verdict,
    gate_for,
    host_shift,
    is_decisive,
    judge,
)

# recorded 3.10x +-4% on h100: band 2.976 .. 3.224; arms 0.99 ms and 0.318 ms
RECORDED = Expected(speedup=3.10, noise_margin=0.04, baseline_ms=0.99, optimized_ms=0.318)
BAND = gate_for(RECORDED, min_speedup=1.2)
FLOOR = gate_for(None, min_speedup=1.2)


def est(speedup: float, lo: float, hi: float) -> SpeedupEstimate:
    return SpeedupEstimate(speedup=speedup, lo=lo, hi=hi, confidence=0.95, rounds=200)


def judge_banded(estimate: SpeedupEstimate, baseline_ms: float, optimized_ms: float, **kwargs) -> Verdict:
    return judge(estimate, BAND, expected=RECORDED, baseline_ms=baseline_ms, optimized_ms=optimized_ms,
                 hardware="h100", **kwargs)


def test_outcomes_are_their_upper_case_names_as_strings():
    assert [o.value for o in Outcome] == ["PASS", "REGRESSED", "IMPROVED", "INCONCLUSIVE"]
    assert Outcome.PASS == "PASS"


def test_the_specific_warnings_are_aiperf_warnings():
    assert issubclass(ImprovedBeyondExpectation, AiperfWarning)
    assert issubclass(InconclusiveMeasurement, AiperfWarning)
    assert issubclass(AiperfWarning, UserWarning)


def test_expected_from_entry_reads_the_speedup_margin_and_arm_medians():
    entry = {"speedup": 3.1, "noise_margin": 0.04, "baseline": {"median_ms": 0.99, "q1_ms": 0.98},
             "optimized": {"median_ms": 0.318}, "rounds": 400}
    assert Expected.from_entry(entry) == RECORDED
    assert Expected.from_entry(entry).to_json() == {"speedup": 3.1, "noise_margin": 0.04,
                                                    "baseline_ms": 0.99, "optimized_ms": 0.318, "launch_us": None,
                                                    "workload": None}


def test_expected_reads_the_recording_hosts_launch_latency_from_fields_or_older_host_lines():
    entry = {"speedup": 3.1, "noise_margin": 0.04, "recordings": [
        {"speedup": 3.0, "launch_us": 7.8},
        {"speedup": 3.2, "host_cpus": "host CPUs 0,1 of 16 (launch 7.0 us; all CPUs 7.0-12.2 us)"},
        {"speedup": 3.1, "host_cpus": "not pinned"}]}
    assert Expected.from_entry(entry).launch_us == (7.0, 7.8)


@pytest.mark.parametrize(("current", "words"), [(11.3, "44.9% slower"), (5.0, "40% faster")])
def test_host_shift_names_a_host_outside_the_recording_hosts(current, words):
    assert words in host_shift((7.0, 7.8), current)


@pytest.mark.parametrize(("recorded", "current"), [((7.0, 7.8), 9.0), ((7.0, 7.8), 6.0), (None, 11.3), ((7.0, 7.8), None)])
def test_host_shift_is_silent_for_a_comparable_or_unknown_host(recorded, current):
    assert host_shift(recorded, current) is None


def test_a_fall_on_another_host_is_inconclusive_for_a_case_that_times_host_work():
    est = SpeedupEstimate(speedup=2.0, lo=1.9, hi=2.1, confidence=0.95, rounds=50)
    gate = gate_for(RECORDED, 1.2)
    args = dict(expected=RECORDED, baseline_ms=0.99, optimized_ms=0.5, hardware="h100")
    assert judge(est, gate, **args).outcome is Outcome.REGRESSED
    moved = judge(est, gate, host_change="this host launches a kernel in 11.3 us, 45% slower", **args)
    assert moved.outcome is Outcome.INCONCLUSIVE
    assert "another host" in moved.reason and "--update-expectations=add" in moved.reason


def test_expected_from_entry_without_arms_leaves_their_times_unknown():
    assert Expected.from_entry({"speedup": 2, "noise_margin": 0.05}) == Expected(2.0, 0.05, None, None)


def test_expected_from_entry_names_the_missing_keys():
    with pytest.raises(ValueError, match="lacks noise_margin"):
        Expected.from_entry({"speedup": 2.0})


@pytest.mark.parametrize(("speedup", "margin", "problem"), [(0.0, 0.05, "speedup"), (2.0, float("inf"), "noise_margin"),
                                                            (2.0, -0.1, "noise_margin")])
def test_expected_refuses_impossible_values(speedup, margin, problem):
    with pytest.raises(ValueError, match=problem):
        Expected(speedup, margin)


def test_gate_from_an_expectation_is_the_band_around_the_recorded_speedup():
    gate = gate_for(Expected(2.0, 0.05), min_speedup=1.2)
    assert (gate.low, gate.high, gate.source) == (pytest.approx(2.0 / 1.05), pytest.approx(2.1), "expectation")


def test_a_margin_over_100_percent_still_gives_a_positive_low_edge():
    assert gate_for(Expected(3.0, 1.2), min_speedup=1.2).low == pytest.approx(3.0 / 2.2)


def test_gate_without_an_expectation_is_the_open_floor():
    assert FLOOR == Gate(low=1.2, high=None, source="floor")
    assert FLOOR.to_json() == {"low": 1.2, "high": None, "source": "floor", "floor": None}


def test_the_floor_holds_under_an_expectation_that_recorded_a_loss():
    gate = gate_for(Expected(0.51, 0.05), min_speedup=1.2)
    assert (gate.low, gate.source, gate.floor) == (1.2, "expectation", 1.2)
    verdict = judge(est(0.51, 0.50, 0.52), gate, expected=Expected(0.51, 0.05), baseline_ms=1.0,
                    optimized_ms=1.96, hardware="h100")
    assert verdict.outcome is Outcome.REGRESSED
    assert "the min_speedup floor 1.20x, above the h100 band's low edge (recorded 0.51x +-5%" in verdict.reason
    assert "declares no known_loss" in verdict.reason


def test_the_floor_raises_a_band_edge_below_it_but_not_a_band_above_it():
    assert gate_for(Expected(1.15, 0.1), min_speedup=1.1).low == 1.1
    assert gate_for(Expected(2.0, 0.05), min_speedup=1.2).floor is None


def test_a_declared_known_loss_is_gated_by_its_recorded_band():
    gate = gate_for(Expected(0.78, 0.03), min_speedup=1.1, known_loss="the L2 window thrashes at this size")
    assert (gate.low, gate.high, gate.floor) == (pytest.approx(0.78 / 1.03), pytest.approx(0.78 * 1.03), None)
    verdict = judge(est(0.78, 0.77, 0.79), gate, expected=Expected(0.78, 0.03), baseline_ms=1.0,
                    optimized_ms=1.28, hardware="h100")
    assert verdict.outcome is Outcome.PASS


def test_gate_refuses_a_non_positive_floor():
    with pytest.raises(ValueError, match="min_speedup"):
        gate_for(None, min_speedup=0.0)


@pytest.mark.parametrize(("lo", "hi", "decisive"), [(1.2, 1.3, True), (1.25, 1.3, True), (1.0, 1.19, True),
                                                    (1.1, 1.3, False), (1.0, 1.2, False)])
def test_is_decisive_when_the_interval_is_wholly_on_one_side_of_the_low_edge(lo, hi, decisive):
    assert is_decisive(est((lo + hi) / 2, lo, hi), FLOOR) is decisive


def test_regression_blames_the_optimized_arm_when_only_it_slowed():
    verdict = judge_banded(est(2.41, 2.38, 2.44), baseline_ms=1.01, optimized_ms=0.412)
    assert verdict == Verdict(Outcome.REGRESSED, (
        "speedup 2.41x [2.38, 2.44] is below the h100 band 2.98x..3.22x (recorded 3.10x +-4%): "
        "the optimized arm got slower (0.412 ms vs recorded 0.318 ms, +30%); "
        "the baseline is unchanged (1.01 ms vs recorded 0.99 ms, +2%)"))


def test_regression_blames_the_baseline_when_only_it_got_faster():
    verdict = judge_banded(est(2.52, 2.50, 2.55), baseline_ms=0.80, optimized_ms=0.318)
    assert verdict.outcome is Outcome.REGRESSED
    assert verdict.reason.endswith(": the baseline got faster (0.8 ms vs recorded 0.99 ms, -19%); "
                                   "the optimized arm is unchanged (0.318 ms vs recorded 0.318 ms, +0%)")


def test_regression_names_both_arms_when_both_moved():
    verdict = judge_banded(est(2.0, 1.9, 2.1), baseline_ms=0.80, optimized_ms=0.40)
    assert verdict.outcome is Outcome.REGRESSED
    assert ("the optimized arm got slower (0.4 ms vs recorded 0.318 ms, +26%) and "
            "the baseline got faster (0.8 ms vs recorded 0.99 ms, -19%)") in verdict.reason


def test_regression_says_the_ratio_moved_when_neither_arm_did():
    # baseline -2%, optimized +3%: each within the 4% margin, together -5% on the ratio
    verdict = judge_banded(est(2.90, 2.88, 2.92), baseline_ms=0.97, optimized_ms=0.328)
    assert verdict.outcome is Outcome.REGRESSED
    assert "neither arm moved beyond the +-4% margin, the ratio did" in verdict.reason


def test_regression_against_an_expectation_without_arm_times_says_so():
    bare = Expected(3.10, 0.04)
    verdict = judge(est(2.41, 2.38, 2.44), gate_for(bare, 1.2), expected=bare, baseline_ms=1.0,
                    optimized_ms=0.41, hardware="h100")
    assert verdict.outcome is Outcome.REGRESSED
    assert verdict.reason.endswith("the expectation records no arm times, so the half that moved cannot be named")


def test_a_throttled_gpu_turns_a_regression_into_inconclusive():
    verdict = judge_banded(est(2.41, 2.38, 2.44), baseline_ms=1.01, optimized_ms=0.412,
                           throttle=["hw_slowdown", "sw_thermal"])
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.reason.startswith("throttled: hw_slowdown, sw_thermal; speedup 2.41x [2.38, 2.44] is below")


def test_throttle_does_not_touch_a_pass():
    verdict = judge_banded(est(3.1, 3.0, 3.2), baseline_ms=0.99, optimized_ms=0.318, throttle=["sw_power_cap"])
    assert verdict.outcome is Outcome.PASS


def test_pass_when_the_interval_clears_the_low_edge_of_the_band():
    verdict = judge_banded(est(3.1, 3.0, 3.2), baseline_ms=0.99, optimized_ms=0.318)
    assert verdict == Verdict(Outcome.PASS, "speedup 3.10x [3.00, 3.20] clears the low edge 2.98x of the h100 band "
                                            "2.98x..3.22x (recorded 3.10x +-4%)")


def test_pass_when_the_interval_only_reaches_above_the_band():
    assert judge_banded(est(3.2, 3.1, 3.3), baseline_ms=0.99, optimized_ms=0.31).outcome is Outcome.PASS


def test_pass_when_the_lower_bound_sits_exactly_on_the_gate():
    assert judge(est(1.3, 1.2, 1.4), FLOOR, expected=None, baseline_ms=1.3, optimized_ms=1.0).outcome is Outcome.PASS


def test_improved_when_the_whole_interval_is_above_the_band_and_proposes_an_update():
    verdict = judge_banded(est(3.6, 3.5, 3.7), baseline_ms=0.99, optimized_ms=0.275)
    assert verdict.outcome is Outcome.IMPROVED
    assert "is above the h100 band 2.98x..3.22x" in verdict.reason
    assert "the optimized arm got faster (0.275 ms vs recorded 0.318 ms, -14%)" in verdict.reason
    assert verdict.reason.endswith("record it with --update-expectations")


def test_the_floor_never_reports_improved():
    verdict = judge(est(9.0, 8.5, 9.5), FLOOR, expected=None, baseline_ms=9.0, optimized_ms=1.0, hardware="l4")
    assert verdict.outcome is Outcome.PASS


def test_without_an_expectation_the_reason_names_the_hardware_and_the_floor():
    verdict = judge(est(1.10, 1.05, 1.15), FLOOR, expected=None, baseline_ms=1.1, optimized_ms=1.0, hardware="l4")
    assert verdict == Verdict(Outcome.REGRESSED, (
        "speedup 1.10x [1.05, 1.15] is below the floor 1.20x: no expectation recorded for l4; "
        "gated by min_speedup 1.20x (baseline 1.1 ms, optimized 1 ms)"))
    passing = judge(est(1.5, 1.4, 1.6), FLOOR, expected=None, baseline_ms=1.5, optimized_ms=1.0, hardware="l4")
    assert "no expectation recorded for l4; gated by min_speedup 1.20x" in passing.reason


def test_inconclusive_when_the_interval_straddles_the_gate():
    verdict = judge_banded(est(3.0, 2.9, 3.1), baseline_ms=0.99, optimized_ms=0.33)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.reason.startswith("speedup 3.00x [2.90, 3.10] straddles the low edge 2.98x of the h100 band")
    assert "the interval straddles the gate; noise" in verdict.reason


def test_inconclusive_against_the_floor_still_names_the_missing_expectation():
    verdict = judge(est(1.2, 1.1, 1.3), FLOOR, expected=None, baseline_ms=1.2, optimized_ms=1.0)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "no expectation recorded for this hardware; gated by min_speedup 1.20x" in verdict.reason


def test_every_reason_is_one_line_with_the_speedup_and_its_interval():
    estimates = [est(2.41, 2.38, 2.44), est(3.1, 3.0, 3.2), est(3.6, 3.5, 3.7), est(3.0, 2.9, 3.1)]
    for estimate in estimates:
        for gate, expected in ((BAND, RECORDED), (FLOOR, None)):
            reason = judge(estimate, gate, expected=expected, baseline_ms=1.0, optimized_ms=0.3).reason
            assert "\n" not in reason
            assert f"speedup {estimate.speedup:.2f}x [{estimate.lo:.2f}, {estimate.hi:.2f}]" in reason


def test_unit_is_used_for_every_ratio_in_the_reason():
    verdict = judge(est(1.1, 1.05, 1.15), FLOOR, expected=None, baseline_ms=1.1, optimized_ms=1.0, unit="x less memory")
    assert "speedup 1.10x less memory [1.05, 1.15] is below the floor 1.20x less memory" in verdict.reason
