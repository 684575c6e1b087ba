"""Hooks that pytest-aiperf offers to conftest files and other plugins."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_aiperf_backend(config: pytest.Config) -> Any:
    """Return a timing backend to use instead of CUDA events or the host clock.

    A backend has ``name``, ``device`` ("cuda" or "cpu"), ``hardware`` (its expectations key), ``l2_bytes`` and the
    methods ``flush()``, ``sync()``, ``time_call(fn, args, hide_dispatch=True) -> (event_ms, wall_ms)`` and
    ``peak_bytes(fn, args) -> int | None``; optionally ``dispatch_note(fn) -> dict``, recorded with each arm.
    Example, in a ``conftest.py``::

        def pytest_aiperf_backend(config):
            return MyDeviceTimer()
    """
