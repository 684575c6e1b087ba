"""A per-case time limit: a case that runs past it (a hung kernel, a deadlock) ends the process with a clear
message instead of hanging the run.

A kernel that never returns cannot be interrupted from Python, so the only way out is to end the process. When
the limit passes, a timer thread calls ``on_expire(label, seconds, item)`` (``ending.on_hang``: it says which case
hung and prints every thread's stack; in the reporting process it also fails the case and finishes the session, so
pytest writes its outputs) and then ends the process with ``EXIT_CODE``. A case that finishes just as its limit
passes waits in ``disarm`` for that ending, so only one thread ever finishes the session. If Python itself is stuck
and the timer cannot run, a C-level backstop (``faulthandler.dump_traceback_later``) prints the stacks and ends the
process ``GRACE_S`` after the limit. Under xdist only the worker ends: xdist reports its case as crashed and goes on
in a new worker.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from typing import Any, Callable

EXIT_CODE = 124  # what timeout(1) returns: the run was ended for running too long
GRACE_S = 30.0
DISTRIBUTED_GRACE_S = 60.0


def limit(timeout_s: float, *, distributed: bool = False) -> float:
    """The watchdog's limit for one case (0: none). A distributed case's ranks are already limited to
    ``timeout_s`` by the process that starts them (``distributed.measure``), which then kills them and fails only
    that case; the watchdog waits ``DISTRIBUTED_GRACE_S`` longer, so it ends the run only where that path itself
    hangs. That path takes up to 5 s per rank to join ranks that answered (40 s for 8), well under a second to kill
    ranks that did not, plus the case's own work outside its ranks."""
    if timeout_s <= 0:
        return 0.0
    return timeout_s + DISTRIBUTED_GRACE_S if distributed else timeout_s


class Watchdog:
    """``arm(label, seconds, item)`` before a case, ``disarm()`` after it; at most one case is armed at a time.
    ``item`` is handed to ``on_expire`` as is."""

    def __init__(self, on_expire: Callable[[str, float, Any], None], *, exit: Callable[[int], None] = os._exit,
                 backstop: bool = True) -> None:
        self._on_expire, self._exit, self._backstop = on_expire, exit, backstop
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._expired = False
        self._ended = threading.Event()

    @property
    def expired(self) -> bool:
        """Whether a case ran past its limit: the process is ending on the watchdog's thread."""
        return self._expired

    def arm(self, label: str, seconds: float, item: Any = None) -> None:
        if seconds <= 0:
            return
        self.disarm()
        with self._lock:
            timer = threading.Timer(seconds, lambda: self._expire(timer, label, seconds, item))
            timer.daemon = True
            self._timer = timer
            timer.start()
            if self._backstop:
                faulthandler.dump_traceback_later(seconds + GRACE_S, exit=True, file=sys.__stderr__)

    def disarm(self) -> None:
        """Stop the armed limit; if it has already passed, wait until the watchdog has ended the process."""
        with self._lock:
            expired = self._expired
            if self._timer is not None and not expired:
                self._timer.cancel()
                self._timer = None
                if self._backstop:
                    faulthandler.cancel_dump_traceback_later()
        if expired:
            self._ended.wait()

    def _expire(self, timer: threading.Timer, label: str, seconds: float, item: Any) -> None:
        with self._lock:
            if self._timer is not timer:  # disarmed as it fired: the case finished in time
                return
            self._expired = True
        try:
            self._on_expire(label, seconds, item)
        except BaseException as exc:  # the report is best effort; ending the process is not
            _write(f"pytest-aiperf: {label} ran past {seconds:g} s; reporting it failed too: {exc!r}")
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        self._exit(EXIT_CODE)
        self._ended.set()  # reached only where ``exit`` returns (tests)


def _write(text: str) -> None:
    try:
        print(text, file=sys.__stderr__, flush=True)
    except (AttributeError, OSError, ValueError):
        pass


def message(label: str, seconds: float, finished: int | None) -> str:
    """What the run says when ``label`` passes its limit: ``finished`` tests (of any outcome) ended before it in
    the reporting process; None in an xdist worker."""
    head = (f"pytest-aiperf: {label} ran past its time limit of {seconds:g} s (--aiperf-timeout): a hung kernel, a "
            "deadlock or an unexpectedly long workload.")
    if finished is None:
        return (f"{head} This xdist worker ends now (exit {EXIT_CODE}): xdist reports the test as crashed and runs "
                "the remaining tests in a new worker. Thread stacks follow on stderr.")
    tests = f"{finished} test{'s' * (finished != 1)} that finished before it"
    return (f"{head} It fails, and the run ends now with exit {EXIT_CODE}: the {tests} and it are reported, pytest "
            "writes its outputs (JUnit XML, --benchmark-json, the cache for --lf) and every expectation update is "
            "kept. Thread stacks follow on stderr.")
