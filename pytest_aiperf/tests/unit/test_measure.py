"""Sampling over input placements, ranks and call orders, and host-CPU pinning, on a scripted clock (no GPU, no
real timing) and scripted ranks (no process group)."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import pytest

from pytest_aiperf import clocks, host, measure
from pytest_aiperf.verdict import Gate


class ScriptedClock:
    """A backend whose 'time' for a call is the number the variant returns."""

    name, device, l2_bytes = "scripted", "cpu", 0

    def __init__(self, latency_by_cpu: dict[int, float] | None = None) -> None:
        self.latency_by_cpu = latency_by_cpu or {}
        self.holds: set[bool] = set()
        self.called: list[Callable[..., Any]] = []

    def flush(self) -> None:
        return None

    def sync(self) -> None:
        return None

    def time_call(self, fn: Callable[..., Any], args: Sequence[Any], hide_dispatch: bool = True) -> tuple[float, float]:
        self.holds.add(hide_dispatch)
        self.called.append(fn)
        value = fn(*args)
        return value, value

    def launch_latency_us(self) -> float:
        (cpu,) = os.sched_getaffinity(0)
        return self.latency_by_cpu.get(cpu, 50.0)


def test_a_sample_is_the_mean_over_one_call_at_every_placement() -> None:
    decided_at_once = Gate(low=1.5, high=None, source="floor")
    samples = measure.sample_pair(ScriptedClock(), lambda x: 2.0 * x, lambda x: x, [(1.0,), (3.0,)], cold=True,
                                  budget_s=30.0, gate=decided_at_once, min_rounds=5)
    assert samples.placements == 2
    assert samples.base_ms == [4.0] * 5 and samples.opt_ms == [2.0] * 5


@pytest.mark.parametrize("hide_dispatch", [True, False])
def test_every_timed_call_gets_the_dispatch_mode_of_its_case(hide_dispatch: bool) -> None:
    clock = ScriptedClock()
    measure.sample_pair(clock, lambda x: 2.0 * x, lambda x: x, [(1.0,)], cold=True, budget_s=0.05, gate=None,
                        hide_dispatch=hide_dispatch)
    assert clock.holds == {hide_dispatch}


class ScriptedRanks:
    """Rank 1 of two, in process: rank 0's decisions are ``decisions``, consumed in order, and the other rank's
    round times are this rank's scaled by ``other`` (cycled per round), so either rank can be the slower one."""

    def __init__(self, decisions: list[bool], other: list[list[float]]) -> None:
        self.decisions, self.other = list(decisions), other
        self.proposals: list[bool] = []
        self.barriers = self.rounds = 0

    def barrier(self) -> None:
        self.barriers += 1

    def slowest(self, times: list[float]) -> list[float]:
        factors = self.other[self.rounds % len(self.other)]
        self.rounds += 1
        return [max(mine, mine * f) for mine, f in zip(times, factors, strict=True)]

    def agree(self, flag: bool) -> bool:
        self.proposals.append(flag)
        return self.decisions.pop(0)


@pytest.mark.parametrize("budget_s", [1000.0, 0.0], ids=["rank-1-would-go-on", "rank-1-would-stop"])
def test_on_ranks_a_round_is_the_slowest_ranks_and_rank_0_decides_every_loop_end(budget_s: float) -> None:
    warm_up, drop_two_placements, sample = [False] * 3 + [True], [True, True], [False] * 4 + [True]
    ranks = ScriptedRanks(warm_up + drop_two_placements + sample,
                          other=[[1.5, 0.5, 1.5, 0.5], [0.5, 1.5, 0.5, 1.5]])  # base, opt event; base, opt wall
    clock = ScriptedClock()
    samples = measure.sample_pair(clock, lambda x: 2.0 * x, lambda x: x, [(1.0,), (1.0,), (1.0,)], cold=False,
                                  budget_s=budget_s, gate=None, min_rounds=2, ranks=ranks)
    assert ranks.decisions == [], "this rank made fewer agreements (collectives) than rank 0"
    assert (samples.warmup_calls, samples.placements, len(samples.base_ms)) == (4, 1, 5)
    assert samples.base_ms == [3.0, 2.0, 3.0, 2.0, 3.0] and samples.opt_ms == [1.0, 1.5, 1.0, 1.5, 1.0]
    assert samples.base_wall_ms == samples.base_ms and samples.opt_wall_ms == samples.opt_ms
    assert ranks.barriers == len(clock.called) == 2 * (4 + 5), "a barrier before every timed call"
    own = {1000.0: [False] * 3 + [False] + [False, False] + [False] * 5,
           0.0: [False] * 2 + [True, True] + [True, True] + [False] + [True] * 4}[budget_s]
    assert ranks.proposals == own, "rank 1's own view, which rank 0's decisions overrode"


def test_compute_only_is_timed_in_every_round_and_the_calls_run_in_every_order_in_turn() -> None:
    def base(x: float) -> float:
        return 3.0 * x

    def opt(x: float) -> float:
        return 2.0 * x

    def compute(x: float) -> float:
        return x

    clock = ScriptedClock()
    samples = measure.sample_pair(clock, base, opt, [(1.0,)], cold=False, budget_s=0.02, gate=None,
                                  compute_only=compute)
    rounds = len(samples.base_ms)
    assert rounds >= 12 and len(samples.opt_ms) == len(samples.compute_ms) == rounds
    assert (samples.base_ms[0], samples.opt_ms[0], samples.compute_ms[0]) == (3.0, 2.0, 1.0)
    assert set(samples.compute_ms) == {1.0}
    timed = clock.called[3 * samples.warmup_calls:]
    assert clock.called[:3] == [base, opt, compute] and len(timed) == 3 * rounds
    orders = [tuple(timed[i:i + 3]) for i in range(0, len(timed), 3)]
    assert len(set(orders[:6])) == 6 and all(set(order) == {base, opt, compute} for order in orders)
    assert orders[6:12] == orders[:6], "the six orders repeat in the same turn"


def test_a_case_rejects_an_unknown_dispatch_mode() -> None:
    from pytest_aiperf import Case

    with pytest.raises(ValueError, match="host_dispatch must be 'hidden' or 'timed', got 'eager'"):
        Case(name="toy", baseline=abs, optimized=abs, inputs=lambda *a: (), time_shapes=[(1,)], check_shapes=[(1,)],
             host_dispatch="eager")


def test_placements_are_dropped_when_the_budget_cannot_afford_enough_cycles() -> None:
    samples = measure.sample_pair(ScriptedClock(), lambda x: 1000.0 * x, lambda x: 500.0 * x, [(1.0,), (1.0,)],
                                  cold=False, budget_s=0.05, gate=None)
    assert samples.placements == 1


def test_inputs_without_device_tensors_have_one_placement() -> None:
    import torch

    inputs = (torch.ones(3), 7, "text")
    assert measure.placements(inputs) == [inputs]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and two CPUs")
def test_pin_host_keeps_the_thread_on_the_cpus_that_launch_fastest() -> None:
    import torch

    before, threads = os.sched_getaffinity(0), torch.get_num_threads()
    cpus = sorted(before)
    slow, fast = cpus[0], cpus[1]
    try:
        torch.set_num_threads(2)
        pin = host.pin_host(ScriptedClock({slow: 10.4, fast: 7.4}))
        assert pin is not None and pin.cpus == (fast,)
        assert os.sched_getaffinity(0) == {fast}
        assert torch.get_num_threads() == 1
        assert f"host CPUs {fast} of {len(cpus)} (launch 7.4 us; all CPUs 7.4-" in pin.describe()
        assert pin.describe().endswith("; torch threads 2 -> 1)")
    finally:
        os.sched_setaffinity(0, before)
        torch.set_num_threads(threads)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and two CPUs")
def test_pin_host_keeps_an_xdist_worker_inside_its_share_of_the_cpus() -> None:
    before = os.sched_getaffinity(0)
    cpus = sorted(before)
    try:
        assert host.pin_host(ScriptedClock({cpu: 7.0 for cpu in cpus}), share=lambda allowed: allowed[-1:]) is None
        assert os.sched_getaffinity(0) == {cpus[-1]}
    finally:
        os.sched_setaffinity(0, before)


def test_pin_host_does_nothing_for_a_backend_without_launches() -> None:
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    assert host.pin_host(clocks.CpuClock()) is None
    if before is not None:
        assert os.sched_getaffinity(0) == before


def test_a_compute_capability_gates_only_cuda_devices_and_a_malformed_one_is_rejected() -> None:
    from pytest_aiperf import Case

    args = dict(baseline=abs, optimized=abs, inputs=lambda *a: (), time_shapes=[(4,)], check_shapes=[(2,)])
    assert not Case(name="fp8_mlp", min_capability=(9, 0), **args).needs_cuda  # its CPU path is still checked
    assert Case(name="tma_copy", min_capability=(9, 0), needs_cuda=True, **args).needs_cuda
    with pytest.raises(ValueError, match=r"min_capability must be \(major, minor\), got 9"):
        Case(name="tma_copy", min_capability=9, **args)
