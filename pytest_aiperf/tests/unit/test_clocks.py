"""The adaptive dispatch hold (pure bookkeeping) and the timing-backend interface, tested without a GPU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_aiperf.clocks import CpuClock, DispatchHold, TimingBackend, dispatch_notes


def arm() -> None:
    return None


def other_arm() -> None:
    return None


def test_a_dispatch_within_the_hold_leaves_it_alone() -> None:
    hold = DispatchHold(base_us=50, max_us=400, short_us=200)
    assert hold.observe(arm, 20.0) is False
    assert hold.hold_us(arm) == 50
    assert hold.late_calls(arm) == 0


def test_a_slow_short_dispatch_doubles_into_the_next_hold_of_that_arm_only() -> None:
    hold = DispatchHold(base_us=50, max_us=400, short_us=200)
    assert hold.observe(arm, 80.0) is True
    assert hold.hold_us(arm) == 160
    assert hold.late_calls(arm) == 1
    assert hold.hold_us(other_arm) == 50
    assert hold.observe(arm, 150.0) is False, "the raised hold now covers a dispatch this slow"


def test_the_hold_never_exceeds_its_maximum() -> None:
    hold = DispatchHold(base_us=50, max_us=120, short_us=200)
    hold.observe(arm, 190.0)
    assert hold.hold_us(arm) == 120


def test_an_arms_own_long_host_work_is_never_hidden_beyond_the_base_hold() -> None:
    hold = DispatchHold(base_us=50, max_us=400, short_us=200)
    for _ in range(5):
        assert hold.observe(arm, 5000.0) is True
    assert hold.hold_us(arm) == 50, "a 5 ms host pipeline is the arm's work, not a slow dispatch"
    assert (hold.late_calls(arm), hold.calls(arm)) == (5, 5)


@pytest.mark.parametrize("base, top", [(0.0, 100.0), (200.0, 100.0)])
def test_an_impossible_hold_range_is_refused(base: float, top: float) -> None:
    with pytest.raises(ValueError, match="base_us"):
        DispatchHold(base_us=base, max_us=top)


def test_an_arm_that_waits_for_the_device_keeps_the_base_hold_however_short_its_host_work() -> None:
    hold = DispatchHold(base_us=50, max_us=400, short_us=200)
    assert hold.observe(arm, 120.0, pending=False) is True
    assert hold.hold_us(arm) == 50, "a synchronizing arm's host work between device steps is its own time"


def test_the_host_clock_is_a_timing_backend_that_notes_no_dispatch() -> None:
    clock = CpuClock()
    assert isinstance(clock, TimingBackend)
    assert clock.dispatch_note(arm) is None
    assert dispatch_notes(clock, {"baseline": arm, "optimized": other_arm}) == {}


def test_a_backend_without_dispatch_note_gets_no_dispatch_record_and_one_with_it_gets_each_arms() -> None:
    bare = SimpleNamespace(name="custom")
    assert dispatch_notes(bare, {"baseline": arm}) == {}
    noting = SimpleNamespace(dispatch_note=lambda fn: {"hold_us": 50.0, "late_calls": 0, "calls": fn is arm})
    assert dispatch_notes(noting, {"baseline": arm, "optimized": other_arm}) == {
        "baseline": {"hold_us": 50.0, "late_calls": 0, "calls": True},
        "optimized": {"hold_us": 50.0, "late_calls": 0, "calls": False}}
