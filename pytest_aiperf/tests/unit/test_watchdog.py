"""The per-case time limit, with the process exit replaced by a recorder (no process ends here)."""

from __future__ import annotations

import threading

from pytest_aiperf import watchdog


def test_a_case_past_its_limit_is_reported_then_the_process_ends_with_exit_124() -> None:
    said, exited, done = [], [], threading.Event()

    def exit_(code: int) -> None:
        exited.append(code)
        done.set()

    dog = watchdog.Watchdog(lambda label, seconds: said.append((label, seconds)), exit=exit_, backstop=False)
    dog.arm("suites/ch90/test_toy.py::test[hang]", 0.05)
    assert done.wait(5), "the watchdog never fired"
    assert said == [("suites/ch90/test_toy.py::test[hang]", 0.05)] and exited == [124]


def test_a_case_that_finishes_in_time_is_never_reported() -> None:
    fired = threading.Event()
    dog = watchdog.Watchdog(lambda label, seconds: fired.set(), exit=lambda code: fired.set(), backstop=False)
    dog.arm("fast case", 0.2)
    dog.disarm()
    assert not fired.wait(0.5)


def test_the_process_ends_even_when_the_report_itself_fails() -> None:
    exited, done = [], threading.Event()

    def report(label: str, seconds: float) -> None:
        raise OSError("stderr is gone")

    def exit_(code: int) -> None:
        exited.append(code)
        done.set()

    dog = watchdog.Watchdog(report, exit=exit_, backstop=False)
    dog.arm("case", 0.01)
    assert done.wait(5) and exited == [124]


def test_a_limit_of_zero_arms_nothing() -> None:
    fired = threading.Event()
    dog = watchdog.Watchdog(lambda label, seconds: fired.set(), exit=lambda code: fired.set(), backstop=False)
    dog.arm("case", 0)
    assert not fired.wait(0.2)


def test_the_message_names_the_case_the_limit_and_what_is_kept() -> None:
    text = watchdog.message("suites/ch07/test_memory_access.py::test[tiled_transpose-fp32-14336x4096]", 300, 1)
    assert "test[tiled_transpose-fp32-14336x4096] ran past its time limit of 300 s (--aiperf-timeout)" in text
    assert "(exit 124); the 1 case finished before it is reported and recorded below" in text
