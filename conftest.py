"""Repository root marker for pytest; the plugin itself loads through its `pytest11` entry point (named aiperf)."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("aiperf"):
        raise pytest.UsageError("this repository's suites and tests need the pytest-aiperf plugin, which is not "
                                "loaded: install it (pip install -e .) and do not disable it (-p no:aiperf)")
