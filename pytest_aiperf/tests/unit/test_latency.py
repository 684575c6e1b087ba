"""Request-level latency metrics from a timeline, and the clock that makes the declared one a case's sample."""

from __future__ import annotations

import pytest

from pytest_aiperf.clocks import CpuClock
from pytest_aiperf.latency import Latency, Timeline, merged, metrics, percentile


def test_ttft_tpot_and_throughput_come_from_arrivals_and_token_times() -> None:
    timeline = Timeline(arrival_s=[0.0, 0.010], token_s=[[0.020, 0.025, 0.030], [0.040, 0.050]])
    found = metrics(timeline)
    assert found["ttft_p50"] == pytest.approx(25.0)       # 20 ms and 30 ms
    assert found["tpot_p50"] == pytest.approx(7.5)        # 5 ms and 10 ms between tokens
    assert found["e2e_p99"] == pytest.approx(30 + 0.99 * (40 - 30))
    assert found["tokens_per_s"] == pytest.approx(5 / 0.050)


def test_percentiles_interpolate_between_order_statistics() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5 and percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_the_latency_clock_samples_the_declared_metric_and_keeps_the_others() -> None:
    clock = Latency(CpuClock(), "ttft_p50")

    def arm():
        return "tokens", Timeline(arrival_s=[1.0], token_s=[[1.002, 1.003]])

    assert clock.time_call(arm, ()) == (pytest.approx(2.0), pytest.approx(2.0))
    assert clock.summary(arm)["tpot_p50"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not one of"):
        Latency(CpuClock(), "ttft_p90")


def test_an_arm_without_a_timeline_cannot_be_timed_for_latency() -> None:
    with pytest.raises(TypeError, match="one Timeline"):
        Latency(CpuClock(), "ttft_p50").time_call(lambda: "tokens", ())


def test_a_request_served_across_ranks_takes_its_first_token_from_one_and_the_rest_from_the_other() -> None:
    prefill = Timeline(arrival_s=[1.000, 1.010], token_s=[[1.020], [1.030]])
    decode = Timeline(arrival_s=[1.001, 1.011], token_s=[[1.025, 1.026], [1.040]])
    view = merged([prefill, decode])
    assert view.arrival_s == [1.000, 1.010]
    assert view.token_s == [[1.020, 1.025, 1.026], [1.030, 1.040]]
    with pytest.raises(ValueError, match="different numbers of requests"):
        merged([prefill, Timeline(arrival_s=[1.0], token_s=[[1.1]])])


def test_the_latency_clock_of_a_distributed_case_samples_the_merged_timeline() -> None:
    other_rank = Timeline(arrival_s=[1.0], token_s=[[1.010]])
    clock = Latency(CpuClock(), "tpot_p50", gather=lambda mine: [other_rank, mine])

    def arm():
        return "tokens", Timeline(arrival_s=[1.0], token_s=[[1.012, 1.014]])

    assert clock.time_call(arm, ())[0] == pytest.approx(2.0)
    assert clock.summary(arm)["ttft_p50"] == pytest.approx(10.0)


def test_the_engine_statistics_a_timeline_carries_are_reported_beside_the_request_metrics() -> None:
    timeline = Timeline(arrival_s=[0.0], token_s=[[0.010, 0.012]], engine={"scheduler_share": 0.25})
    assert metrics(timeline)["scheduler_share"] == 0.25
