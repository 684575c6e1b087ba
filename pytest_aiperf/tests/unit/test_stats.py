from __future__ import annotations


import numpy as np
import pytest

from pytest_aiperf.stats import (
    ArmStats,
    SpeedupEstimate,
    arm_stats,
    block_speedups,
    format_ms,
    noise_margin,
    side_stream_suspect,
    speedup_ci,
)


def test_arm_stats_of_an_odd_count_reads_the_middle_and_quartiles():
    assert arm_stats([4.0, 1.0, 3.0, 2.0, 5.0]) == ArmStats(
        median_ms=3.0, q1_ms=2.0, q3_ms=4.0, min_ms=1.0, max_ms=5.0, n=5)


def test_arm_stats_interpolates_quartiles_linearly_between_samples():
    stats = arm_stats([1.0, 2.0, 3.0, 4.0])
    assert (stats.q1_ms, stats.median_ms, stats.q3_ms) == pytest.approx((1.75, 2.5, 3.25))
    assert isinstance(stats.median_ms, float) and isinstance(stats.n, int)


def test_arm_stats_refuses_no_samples():
    with pytest.raises(ValueError, match="non-empty"):
        arm_stats([])


def test_half_width_rel_is_half_the_interval_over_the_estimate():
    assert SpeedupEstimate(2.0, 1.9, 2.1, 0.95, 10).half_width_rel == pytest.approx(0.05)


def test_speedup_is_the_ratio_of_medians_not_the_median_of_ratios():
    # medians 2 and 2 -> 1.0; the per-round ratios 3, 0.5, 0.5 would give 0.5
    assert speedup_ci([3.0, 1.0, 2.0], [1.0, 2.0, 4.0]).speedup == pytest.approx(1.0)
    assert speedup_ci([6.0, 2.0, 4.0, 9.0], [2.0, 2.0, 3.0, 1.0]).speedup == pytest.approx(5.0 / 2.0)


def test_bootstrap_interval_contains_the_point_estimate():
    rng = np.random.default_rng(7)
    base = 2.0 + 0.2 * rng.random(9)
    opt = 1.0 + 0.3 * rng.random(9)
    est = speedup_ci(base, opt)
    assert est.lo <= est.speedup <= est.hi
    assert est.confidence == 0.95 and est.rounds == 9


def test_bootstrap_keeps_rounds_paired_so_shared_drift_cancels():
    drift = np.linspace(1.0, 5.0, 50)  # the machine slows fivefold over the run, for both arms alike
    est = speedup_ci(2.0 * drift, drift)
    assert (est.lo, est.speedup, est.hi) == pytest.approx((2.0, 2.0, 2.0))


def test_identical_arms_give_an_interval_centred_on_one():
    samples = np.random.default_rng(3).lognormal(0.0, 0.2, 200)
    est = speedup_ci(samples, samples)
    assert (est.lo, est.speedup, est.hi) == (1.0, 1.0, 1.0)


def test_a_over_a_with_independent_noise_gives_an_interval_containing_one():
    rng = np.random.default_rng(11)
    base = rng.normal(1.0, 0.05, 400)
    opt = rng.normal(1.0, 0.05, 400)
    est = speedup_ci(base, opt)
    assert est.lo < 1.0 < est.hi
    assert est.half_width_rel < 0.02


def test_bootstrap_interval_shrinks_with_more_rounds():
    rng = np.random.default_rng(5)
    base = rng.normal(2.0, 0.1, 2000)
    opt = rng.normal(1.0, 0.05, 2000)
    few = speedup_ci(base[:50], opt[:50])
    many = speedup_ci(base, opt)
    assert many.half_width_rel < few.half_width_rel / 3


def test_bootstrap_is_deterministic_for_a_seed_and_varies_across_seeds():
    rng = np.random.default_rng(1)
    base = rng.normal(2.0, 0.2, 60)
    opt = rng.normal(1.0, 0.1, 60)
    assert speedup_ci(base, opt, seed=4) == speedup_ci(base, opt, seed=4)
    assert (speedup_ci(base, opt, seed=4).lo, speedup_ci(base, opt, seed=4).hi) != (
        speedup_ci(base, opt, seed=5).lo, speedup_ci(base, opt, seed=5).hi)


@pytest.mark.parametrize(
    ("base", "opt", "problem"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], "different lengths: baseline 3, optimized 2"),
        ([1.0], [1.0], "at least 2 rounds"),
        ([1.0, float("nan")], [1.0, 1.0], "baseline samples contain a non-finite time"),
        ([1.0, 1.0], [1.0, 0.0], "optimized samples contain a time <= 0 ms"),
    ],
    ids=["unpaired-lengths", "one-round", "nan-in-baseline", "zero-in-optimized"],
)
def test_speedup_ci_names_the_problem_with_bad_samples(base, opt, problem):
    with pytest.raises(ValueError, match=problem):
        speedup_ci(base, opt)


def test_speedup_ci_refuses_a_confidence_outside_zero_and_one():
    with pytest.raises(ValueError, match="confidence"):
        speedup_ci([1.0, 2.0], [1.0, 2.0], confidence=1.0)


def test_block_speedups_split_rounds_into_consecutive_near_equal_blocks():
    # 10 rounds in 4 blocks: sizes 3, 3, 2, 2
    base = [6.0, 2.0, 4.0, 9.0, 3.0, 6.0, 8.0, 8.0, 5.0, 5.0]
    opt = [2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0]
    assert block_speedups(base, opt, blocks=4) == pytest.approx([2.0, 2.0, 4.0, 5.0])


def test_block_speedups_use_fewer_blocks_so_each_holds_two_rounds():
    base = [2.0, 4.0, 6.0, 9.0, 9.0]
    opt = [1.0, 1.0, 1.0, 3.0, 3.0]
    assert block_speedups(base, opt, blocks=8) == pytest.approx([4.0, 3.0])
    assert block_speedups(base[:3], opt[:3], blocks=8) == pytest.approx([4.0])


def test_block_speedups_refuse_zero_blocks():
    with pytest.raises(ValueError, match="blocks"):
        block_speedups([1.0, 2.0], [1.0, 2.0], blocks=0)


def test_noise_margin_is_the_floor_when_blocks_agree_and_the_interval_is_tight():
    drift = np.linspace(1.0, 2.0, 32)
    assert noise_margin(2.0 * drift, drift) == pytest.approx(0.03)


def test_noise_margin_is_k_robust_sds_of_the_block_speedups():
    # block speedups 1.00 1.02 0.98 1.00 1.01 0.99 1.00 1.04: median 1.00, MAD 0.01 -> 3 * 1.4826 * 0.01
    per_block = [1.00, 1.02, 0.98, 1.00, 1.01, 0.99, 1.00, 1.04]
    base = [s for s in per_block for _ in range(2)]
    opt = [1.0] * 16
    tight = SpeedupEstimate(1.0, 0.999, 1.001, 0.95, 16)
    assert noise_margin(base, opt, estimate=tight) == pytest.approx(0.044478)


def test_noise_margin_covers_twice_the_interval_half_width():
    drift = np.linspace(1.0, 2.0, 32)
    wide = SpeedupEstimate(2.0, 1.8, 2.2, 0.95, 32)
    assert noise_margin(2.0 * drift, drift, estimate=wide) == pytest.approx(0.2)


def test_noise_margin_ignores_one_wild_block():
    per_block = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0]
    base = [s for s in per_block for _ in range(2)]
    tight = SpeedupEstimate(1.0, 0.999, 1.001, 0.95, 16)
    assert noise_margin(base, [1.0] * 16, estimate=tight) == pytest.approx(0.03)


def test_format_ms_keeps_three_significant_digits():
    assert [format_ms(v) for v in (0.4123, 1.014, 0.99, 25.31, 1234.5)] == ["0.412", "1.01", "0.99", "25.3", "1234"]


def test_side_stream_suspect_flags_events_far_below_the_wall_clock():
    message = side_stream_suspect([0.01, 0.01, 0.01], [1.0, 1.0, 1.0])
    assert message is not None
    assert "0.01 ms" in message and "1 ms" in message and "side stream" in message


def test_side_stream_suspect_spares_small_kernels_dominated_by_sync_latency():
    assert side_stream_suspect([0.006] * 5, [0.03] * 5) is None


def test_side_stream_suspect_spares_events_that_match_the_wall_clock():
    assert side_stream_suspect([1.0] * 5, [1.02] * 5) is None


def test_side_stream_suspect_refuses_no_samples():
    with pytest.raises(ValueError, match="event and wall samples"):
        side_stream_suspect([], [1.0])
