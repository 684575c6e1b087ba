"""How a run that cannot finish its cases ends, so that it still reports and writes what it can.

- A case past its time limit (``on_hang``, on the watchdog's thread; the process ends with exit 124 after it). In
  the reporting process (``-n 0``) the hung test is reported as failed and the session is finished as pytest would
  finish it: the terminal summary, JUnit XML, ``--benchmark-json``, pytest's cache (``--lf``) and the aiperf
  summary. In an xdist worker it only says what hung; xdist reports the crashed worker.
- SIGTERM, what a cancelled CI job receives (``SigtermInterrupts``): in the reporting process it becomes pytest's
  own interruption (as Ctrl-C), which reports and writes the same, with exit code 2.

A SIGKILL, or a crash inside an arm, ends the process with no report at all; what it keeps is every expectation
update made before, since the reporter writes each as its case's report arrives.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
import time
import traceback
from types import FrameType
from typing import Any

import pytest

from pytest_aiperf import watchdog

SIGTERM_MESSAGE = ("SIGTERM ended the run (a cancelled CI job, or kill): the tests that finished are reported and "
                   "their expectation updates kept")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that pytest ends the run as it does on Ctrl-C."""


def on_hang(config: pytest.Config, label: str, seconds: float, item: pytest.Item | None) -> None:
    """The watchdog's last words (on its own thread; the process ends after this): what hung and every thread's
    stack; in the reporting process, the hung test's failed report and the session's finish."""
    capture = config.pluginmanager.getplugin("capturemanager")
    captured = None
    if capture is not None:
        capture.suspend_global_capture(in_=True)
        captured = capture.read_global_capture()
    terminal = config.pluginmanager.getplugin("terminalreporter")
    reporter = config.pluginmanager.get_plugin("aiperf-reporter")
    text = watchdog.message(label, seconds, reporter.tests_finished if reporter is not None else None)
    if terminal is not None:
        terminal.write_line("")
        terminal.write_line(text, red=True, bold=True)
        terminal.flush()
    print(text, file=sys.__stderr__, flush=True)
    faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
    if reporter is None or item is None:
        return
    reporter.ended_early = True
    sections = [(f"Captured {name} call", out) for name, out in zip(("stdout", "stderr"), captured or ()) if out]
    report = pytest.TestReport(item.nodeid, item.location, dict.fromkeys(item.keywords, 1), "failed",
                               f"{text}\n\n{_where(item)}", "call", sections=sections, duration=seconds,
                               start=time.time() - seconds, stop=time.time(), user_properties=item.user_properties)
    item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    session = item.session
    # pytest's terminal reporter prints its summary only for pytest's own exit codes: the session finishes as a
    # failed run, then the watchdog ends the process with its own code.
    session.shouldstop = f"{label} ran past its time limit: the run ends with exit {watchdog.EXIT_CODE}"
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    config.hook.pytest_sessionfinish(session=session, exitstatus=session.exitstatus)
    if terminal is not None:
        terminal.flush()


def _where(item: pytest.Item) -> str:
    """The stack of the main thread (the one running tests) from the test function on, where it is there."""
    frame: FrameType | None = sys._current_frames().get(threading.main_thread().ident or 0)
    if frame is None:
        return ""
    frames = traceback.extract_stack(frame)
    code = getattr(getattr(item, "function", None), "__code__", None)
    start = next((i for i, f in enumerate(frames)
                  if code is not None and (f.filename, f.name) == (code.co_filename, code.co_name)), 0)
    return "The test's thread at its limit (most recent call last):\n" + "".join(traceback.format_list(frames[start:]))


class SigtermInterrupts:
    """Registered in the reporting process, where SIGTERM still has its default action (which ends the process
    with no report): while the run lasts, the first SIGTERM raises ``Terminated`` in the main thread. Ignored once
    the session is finishing (its outputs are being written) or while the watchdog ends a hung run."""

    def __init__(self, dog: watchdog.Watchdog) -> None:
        self._dog = dog
        self._raised = False
        self._finishing = False

    @classmethod
    def install(cls, config: pytest.Config, dog: watchdog.Watchdog) -> None:
        """Handle SIGTERM until ``pytest_unconfigure``, unless it already has a handler (this one, installed
        already, included) or this is not the main thread (only the main thread may set one)."""
        if threading.current_thread() is not threading.main_thread() or \
                signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        handler = cls(dog)
        signal.signal(signal.SIGTERM, handler)
        config.pluginmanager.register(handler, "aiperf-sigterm")

    def __call__(self, signum: int, frame: Any) -> None:
        if self._raised or self._finishing or self._dog.expired:
            return
        self._raised = True
        raise Terminated(SIGTERM_MESSAGE)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self) -> Any:
        self._finishing = True
        return (yield)

    def pytest_unconfigure(self) -> None:
        if signal.getsignal(signal.SIGTERM) is self:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
