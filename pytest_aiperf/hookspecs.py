"""Hooks that pytest-aiperf offers to conftest files and other plugins."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_aiperf_backend(config: pytest.Config) -> Any:
    """Return a timing backend to use instead of CUDA events or the host clock.

    A backend provides ``clocks.TimingBackend``: ``name``, ``device`` ("cuda" or "cpu"), ``l2_bytes`` and the
    methods ``flush()``, ``sync()``, ``time_call(fn, args, hide_dispatch=True) -> (event_ms, wall_ms)``,
    ``peak_bytes(fn, args, reserved=False) -> int | None`` and ``dispatch_note(fn) -> dict | None`` (recorded with each arm of a
    case that hides dispatch). Three may be left out, each with a default: ``dispatch_note`` (no dispatch record),
    ``hardware`` (the expectations key; "custom") and ``launch_latency_us()`` (no host-CPU pinning).
    Example, in a ``conftest.py``::

        def pytest_aiperf_backend(config):
            return MyDeviceTimer()
    """
