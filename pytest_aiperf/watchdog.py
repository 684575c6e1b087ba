"""A per-case time limit: a case that runs past it (a hung kernel, a deadlock) ends the process with a clear
message instead of hanging the run, after the finished cases' results are saved.

A kernel that never returns cannot be interrupted from Python, so the only way out is to end the process. When
the limit passes, a timer thread calls ``on_expire(label, seconds)`` (the plugin says which case hung, prints
every thread's stack, writes the expectation updates and the summary of the cases that finished) and then ends
the process with ``EXIT_CODE``. If Python itself is stuck and the timer cannot run, a C-level backstop
(``faulthandler.dump_traceback_later``) prints the stacks and ends the process ``GRACE_S`` later. Under xdist only
the worker ends: xdist reports the case as crashed and starts a new worker for the rest.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from typing import Callable

EXIT_CODE = 124  # what timeout(1) returns: the run was ended for running too long
GRACE_S = 30.0
DISTRIBUTED_GRACE_S = 60.0


def limit(timeout_s: float, *, distributed: bool = False) -> float:
    """The watchdog's limit for one case (0: none). A distributed case's ranks are already limited to
    ``timeout_s`` by the process that starts them, which then kills them and fails only that case; the watchdog
    waits ``DISTRIBUTED_GRACE_S`` longer, so it ends the run only where that graceful path itself hangs."""
    if timeout_s <= 0:
        return 0.0
    return timeout_s + DISTRIBUTED_GRACE_S if distributed else timeout_s


class Watchdog:
    """``arm(label, seconds)`` before a case, ``disarm()`` after it; at most one case is armed at a time."""

    def __init__(self, on_expire: Callable[[str, float], None], *, exit: Callable[[int], None] = os._exit,
                 backstop: bool = True) -> None:
        self._on_expire, self._exit, self._backstop = on_expire, exit, backstop
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def arm(self, label: str, seconds: float) -> None:
        if seconds <= 0:
            return
        self.disarm()
        with self._lock:
            self._timer = threading.Timer(seconds, self._expire, args=(label, seconds))
            self._timer.daemon = True
            self._timer.start()
            if self._backstop:
                faulthandler.dump_traceback_later(seconds + GRACE_S, exit=True, file=sys.__stderr__)

    def disarm(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                if self._backstop:
                    faulthandler.cancel_dump_traceback_later()

    def _expire(self, label: str, seconds: float) -> None:
        try:
            self._on_expire(label, seconds)
        except BaseException as exc:  # the report is best effort; ending the process is not
            _write(f"pytest-aiperf: {label} ran past {seconds:g} s; reporting it failed too: {exc!r}")
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        self._exit(EXIT_CODE)


def _write(text: str) -> None:
    try:
        print(text, file=sys.__stderr__, flush=True)
    except (AttributeError, OSError, ValueError):
        pass


def message(label: str, seconds: float, finished: int) -> str:
    """What the run says when ``label`` passes its limit."""
    return (f"pytest-aiperf: {label} ran past its time limit of {seconds:g} s (--aiperf-timeout): a hung kernel, a "
            f"deadlock or an unexpectedly long workload. The process ends now (exit {EXIT_CODE}); the "
            f"{finished} case{'s' * (finished != 1)} finished before it {'are' if finished != 1 else 'is'} "
            "reported and recorded below. Thread stacks follow.")
