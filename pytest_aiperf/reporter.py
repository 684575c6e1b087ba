"""The plugin objects registered per process: ``Reporter`` in the reporting process (the single process, or the
xdist controller), ``LongestFirst`` in xdist workers; and the test durations they keep in pytest's cache.

The reporter gathers the records that test reports carry, prints the summary, writes expectation updates once, and
keeps each test's duration for the next run's longest-first order.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_aiperf import benchexport, report, workers
from pytest_aiperf.session import AiperfSession

DURATIONS = "aiperf/durations"  # pytest cache key: seconds per test id of the last run, for longest-first order


class LongestFirst:
    """Registered only in xdist workers given the last run's durations: xdist's load scheduler hands tests out in
    collection order, so the collection is put in ``workers.longest_first`` order, after every other reordering."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        items[:] = [items[i] for i in workers.longest_first([item.nodeid for item in items], self.seconds)]


class Reporter:
    """Registered only in the reporting process: gathers records from reports and prints the summary."""

    def __init__(self, config: pytest.Config, session: AiperfSession) -> None:
        self.config, self.session = config, session
        self.worker_errors = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.session.durations[report.nodeid] = self.session.durations.get(report.nodeid, 0.0) + report.duration
        rec = getattr(report, "aiperf", None)
        if rec is not None:
            self.session.collect(rec)
            benchexport.export(self.config, rec)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        self.worker_errors += error is not None
        for chapter, keys in getattr(node, "workeroutput", {}).get("aiperf_known", {}).items():
            self.session.known.setdefault(chapter, set()).update(keys)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.worker_errors:
            self.session.known.clear()
        self.session.finish()
        cache = getattr(self.config, "cache", None)
        if cache is not None and self.session.durations:
            cache.set(DURATIONS, workers.merged_durations(self.session.last_durations, self.session.durations))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        s = self.session
        if not (s.records or s.changes or s.stale):
            return
        terminalreporter.section("aiperf")
        self.write_summary(terminalreporter)

    def write_summary(self, terminalreporter: Any) -> None:
        s = self.session
        for block in (report.summary_table(s.records) if s.records else "", report.scaling_block(s.records),
                      report.host_note(s.records),
                      report.failures_block(s.records), report.below_floor_block(s.records),
                      report.floor_note(s.records),
                      report.update_table(s.changes) if s.changes else "", report.stale_block(s.stale, s.hardware)):
            if block:
                terminalreporter.write_line(block)


def cached_durations(config: pytest.Config) -> dict[str, float]:
    """The last run's seconds per test id from pytest's cache (``workers.valid_durations``); empty without it."""
    cache = getattr(config, "cache", None)
    return workers.valid_durations(cache.get(DURATIONS, {})) if cache is not None else {}
