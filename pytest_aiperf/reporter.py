"""The plugin objects registered per process: ``Reporter`` in the reporting process (the single process, or the
xdist controller), ``LongestFirst`` in xdist workers; and the test durations they keep in pytest's cache.

The reporter gathers the records that test reports carry, records each into its expectations file as soon as it
arrives (``--update-expectations``: a run that is cancelled or killed later keeps every recording made before),
prints the summary, and keeps each test's duration for the next run's longest-first order.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_aiperf import benchexport, expectations, notes, report, scaling, workers
from pytest_aiperf.collection import Collection
from pytest_aiperf.options import Options

DURATIONS = "aiperf/durations"  # pytest cache key: seconds per test id of the last run, for longest-first order
FAILED_UPDATES = ("error", "refused")


class LongestFirst:
    """Registered only in xdist workers given the last run's durations: xdist's load scheduler hands tests out in
    collection order, so the collection is put in ``workers.longest_first`` order, after every other reordering."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        items[:] = [items[i] for i in workers.longest_first([item.nodeid for item in items], self.seconds)]


class Reporter:
    """Registered only in the reporting process: gathers records from reports, records expectation updates, and
    prints the summary. ``collection`` is this process's (under xdist, filled from the workers' as they end)."""

    def __init__(self, config: pytest.Config, options: Options, collection: Collection,
                 hardware: Callable[[], str], last_durations: dict[str, float]) -> None:
        self.config, self.options, self.collection, self._hardware = config, options, collection, hardware
        self.records: list[dict[str, Any]] = []
        self.changes: list[expectations.Change] = []
        self.stale: list[tuple[Path, str]] = []
        self.problems: list[str] = []
        self.durations: dict[str, float] = {}
        self.last_durations = last_durations
        self.worker_errors = 0
        self.tests_finished = 0
        self.ended_early = False
        self._stamp: tuple[str | None, bool | None] | None = None
        self._finished = False

    @property
    def root(self) -> Any:
        return self.config.rootpath / self.options.expectations_dir

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        rec = getattr(report, "aiperf", None)
        if rec is None:
            return
        self.records.append(rec)
        benchexport.export(self.config, rec)
        if self.options.update is not None:
            self.changes += self._record(rec)

    def pytest_runtest_logfinish(self) -> None:
        self.tests_finished += 1

    def _record(self, rec: dict[str, Any]) -> list[expectations.Change]:
        """Write one record into its expectations file now (locked, merged, atomic)."""
        if self._stamp is None:
            self._stamp = expectations.git_commit(self.config.rootpath)
        commit, dirty = self._stamp
        return expectations.apply_updates(self.root, [rec], mode=self.options.update, commit=commit, dirty=dirty,
                                          date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        self.worker_errors += error is not None
        for chapter, keys in getattr(node, "workeroutput", {}).get("aiperf_known", {}).items():
            self.collection.declare(chapter, keys)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.finish()
        if any(change.status in FAILED_UPDATES for change in self.changes) or self.problems:
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        cache = getattr(self.config, "cache", None)
        if cache is not None and self.durations and self.collection.known:  # a run with perf cases
            cache.set(DURATIONS, workers.merged_durations(self.last_durations, self.durations))

    def finish(self) -> None:
        """Find expectation entries whose case no longer exists (once): only in chapters whose every case id is
        known, and not after a worker crashed (its chapters' ids may be missing)."""
        if self._finished:
            return
        self._finished = True
        if self.worker_errors or not self.collection.known:
            return
        try:
            self.stale = expectations.stale(self.root, self._hardware(), self.collection.known)
        except expectations.ExpectationsError as err:
            self.problems.append(f"stale entries not checked: {err}")

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int) -> None:
        if not (self.records or self.changes or self.stale or self.problems):
            return
        early = self.ended_early or exitstatus == pytest.ExitCode.INTERRUPTED
        terminalreporter.section("aiperf (cases that finished)" if early else "aiperf")
        self.write_summary(terminalreporter)

    def write_summary(self, terminalreporter: Any) -> None:
        records = self.records
        blocks = (report.summary_table(records), scaling.scaling_block(records), notes.host_note(records),
                  notes.compile_block(records), notes.memory_block(records), notes.latency_block(records),
                  notes.ablation_block(records),
                  notes.failures_block(records), notes.below_floor_block(records), notes.floor_note(records),
                  report.update_table(self.changes), report.stale_block(self.stale, self.config.rootpath),
                  "\n".join(self.problems))
        for block in blocks:
            if block:
                terminalreporter.write_line(block)


def cached_durations(config: pytest.Config) -> dict[str, float]:
    """The last run's seconds per test id from pytest's cache (``workers.valid_durations``); empty without it."""
    cache = getattr(config, "cache", None)
    return workers.valid_durations(cache.get(DURATIONS, {})) if cache is not None else {}

