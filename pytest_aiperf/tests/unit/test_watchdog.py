"""The per-case time limit, with the process exit replaced by a recorder (no process ends here), and the SIGTERM
handler's installation."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

from pytest_aiperf import ending, watchdog


def test_a_case_past_its_limit_is_reported_then_the_process_ends_with_exit_124() -> None:
    said, exited, done = [], [], threading.Event()

    def exit_(code: int) -> None:
        exited.append(code)
        done.set()

    dog = watchdog.Watchdog(lambda label, seconds, item: said.append((label, seconds, item)), exit=exit_,
                            backstop=False)
    dog.arm("suites/ch90/test_toy.py::test[hang]", 0.05, "the item")
    assert done.wait(5), "the watchdog never fired"
    assert said == [("suites/ch90/test_toy.py::test[hang]", 0.05, "the item")] and exited == [124]
    assert dog.expired


def test_a_case_that_finishes_in_time_is_never_reported() -> None:
    fired = threading.Event()
    dog = watchdog.Watchdog(lambda label, seconds, item: fired.set(), exit=lambda code: fired.set(), backstop=False)
    dog.arm("fast case", 0.2)
    dog.disarm()
    assert not fired.wait(0.5) and not dog.expired


def test_a_case_that_finishes_as_its_limit_passes_waits_for_the_watchdog_to_end_the_run() -> None:
    """Only one thread finishes the session: ``disarm`` returns only once the watchdog's ending is over."""
    reporting, release, exited = threading.Event(), threading.Event(), []

    def report(label: str, seconds: float, item: Any) -> None:
        reporting.set()
        release.wait(5)

    dog = watchdog.Watchdog(report, exit=exited.append, backstop=False)
    dog.arm("case", 0.01)
    assert reporting.wait(5)
    finisher = threading.Thread(target=dog.disarm)
    finisher.start()
    finisher.join(0.2)
    assert finisher.is_alive() and not exited
    release.set()
    finisher.join(5)
    assert not finisher.is_alive() and exited == [124]


def test_the_process_ends_even_when_the_report_itself_fails() -> None:
    exited, done = [], threading.Event()

    def report(label: str, seconds: float, item: Any) -> None:
        raise OSError("stderr is gone")

    def exit_(code: int) -> None:
        exited.append(code)
        done.set()

    dog = watchdog.Watchdog(report, exit=exit_, backstop=False)
    dog.arm("case", 0.01)
    assert done.wait(5) and exited == [124]


def test_a_limit_of_zero_arms_nothing() -> None:
    fired = threading.Event()
    dog = watchdog.Watchdog(lambda label, seconds, item: fired.set(), exit=lambda code: fired.set(), backstop=False)
    dog.arm("case", 0)
    assert not fired.wait(0.2)


def test_a_distributed_case_is_limited_later_than_its_ranks() -> None:
    assert watchdog.limit(5, distributed=True) == 5 + watchdog.DISTRIBUTED_GRACE_S
    assert watchdog.limit(5) == 5 and watchdog.limit(0, distributed=True) == 0


def test_the_message_names_the_case_the_limit_and_the_tests_that_finished() -> None:
    text = watchdog.message("suites/ch07/test_memory_access.py::test[tiled_transpose-fp32-14336x4096]", 300, 1)
    assert "test[tiled_transpose-fp32-14336x4096] ran past its time limit of 300 s (--aiperf-timeout)" in text
    assert "run ends now with exit 124: the 1 test that finished before it and it are reported" in text


def test_in_an_xdist_worker_the_message_says_xdist_reports_the_crash() -> None:
    text = watchdog.message("suites/ch07/test_x.py::test[case]", 300, None)
    assert "This xdist worker ends now (exit 124): xdist reports the test as crashed" in text


def test_sigterm_is_handled_only_where_it_had_its_default_action(pytestconfig: pytest.Config) -> None:
    """A handler someone else installed is left as it is."""
    def theirs(signum: int, frame: Any) -> None:
        return None

    registered = pytestconfig.pluginmanager.get_plugin("aiperf-sigterm")
    before = signal.signal(signal.SIGTERM, theirs)
    try:
        ending.SigtermInterrupts.install(pytestconfig, watchdog.Watchdog(lambda *args: None, backstop=False))
        assert signal.getsignal(signal.SIGTERM) is theirs
        assert pytestconfig.pluginmanager.get_plugin("aiperf-sigterm") is registered
    finally:
        signal.signal(signal.SIGTERM, before)


def test_sigterm_raises_one_interruption_and_none_while_the_watchdog_ends_the_run() -> None:
    handler = ending.SigtermInterrupts(watchdog.Watchdog(lambda *args: None, backstop=False))
    with pytest.raises(ending.Terminated, match="SIGTERM ended the run"):
        handler(signal.SIGTERM, None)
    handler(signal.SIGTERM, None)
    fired = threading.Event()
    expired = watchdog.Watchdog(lambda *args: fired.set(), exit=lambda code: None, backstop=False)
    expired.arm("case", 0.01)
    assert fired.wait(5)
    expired.disarm()
    assert expired.expired
    ending.SigtermInterrupts(expired)(signal.SIGTERM, None)
