"""``--aiperf-html=PATH``: the reporting process gathers what the page shows and writes it when the session
finishes, which is also how a run ends that the watchdog stopped (``ending.on_hang`` finishes the session) or that
SIGTERM interrupted; under xdist the reporting process is the controller, so the page holds every worker's cases.

Gathered per test report: the record a measured case carries, the traceback of a perf test that failed before it had
a record, and the count of skipped perf tests. At the end, each recorded case's history is read from its expectation
entry (this run's hardware key, so with ``--update-expectations`` the history ends with this run's recording).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_aiperf import expectations, html_report
from pytest_aiperf.cases import chapter_of
from pytest_aiperf.expectations_io import write_atomic

PLUGIN = "aiperf-html"


def register(config: pytest.Config) -> None:
    """In the reporting process, write the page where ``--aiperf-html`` asks for one."""
    path = config.getoption("aiperf_html", None)
    if path:
        config.pluginmanager.register(HtmlReport(config, Path(config.invocation_params.dir, path)), PLUGIN)


def case_of(nodeid: str) -> str:
    """The case id in a node id's brackets (``...::test[double-fp32-1024]`` -> ``double-fp32-1024``), else the id."""
    name = nodeid.rsplit("::", 1)[-1]
    return name[name.index("[") + 1:-1] if "[" in name and name.endswith("]") else nodeid


def histories(root: Path, records: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """The recordings of each record's expectation entry, by ``(hardware, chapter, key)``; an unreadable file or a
    malformed entry gives no history."""
    stores: dict[str, expectations.Store] = {}
    found = {}
    for rec in records:
        hardware, chapter, key = rec.get("hardware"), rec.get("chapter"), rec.get("key")
        try:
            store = stores.setdefault(hardware, expectations.Store(root, hardware, lenient=True))
            entry = store.get(chapter, key)
        except (expectations.ExpectationsError, ValueError):
            continue
        if entry and isinstance(entry.get("recordings"), list):
            found[(hardware, chapter, key)] = entry["recordings"]
    return found


class HtmlReport:
    """Registered in the reporting process when ``--aiperf-html`` is given."""

    def __init__(self, config: pytest.Config, path: Path) -> None:
        self.config, self.path = config, path
        self.records: list[dict[str, Any]] = []
        self.failed: dict[str, html_report.Failed] = {}
        self.skipped: set[str] = set()
        self.outcome = ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rec = getattr(report, "aiperf", None)
        if rec is not None:
            self.records.append(rec)
        elif "perf" in report.keywords and report.failed and report.nodeid not in self.failed:
            module = report.nodeid.split("::", 1)[0]
            self.failed[report.nodeid] = html_report.Failed(report.nodeid, case_of(report.nodeid),
                                                            chapter_of(module), report.longreprtext)
        elif "perf" in report.keywords and report.skipped:
            self.skipped.add(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the page (again, should the session finish twice)."""
        ended = session.shouldstop if isinstance(session.shouldstop, str) and session.shouldstop else None
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            ended = "interrupted (Ctrl-C or SIGTERM); the cases that finished are shown"
        try:
            self.write(ended)
        except OSError as exc:
            self.outcome = f"aiperf: HTML report not written: {exc}"
        else:
            self.outcome = f"aiperf: HTML report {self.path}"

    def write(self, ended: str | None) -> None:
        measured = {rec.get("nodeid") for rec in self.records}
        folder = self.path.parent
        records = [{**rec, "traces": {arm: os.path.relpath(path, folder) for arm, path in rec["traces"].items()}}
                   if rec.get("traces") else rec for rec in self.records]
        commit, dirty = expectations.git_commit(self.config.rootpath)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        at = f" at commit {commit}{' (with uncommitted changes)' if dirty else ''}" if commit else ""
        run = html_report.Run(records=records,
                              failed=[f for nodeid, f in self.failed.items() if nodeid not in measured],
                              skipped=len(self.skipped - measured - set(self.failed)),
                              histories=histories(self.config.rootpath / self.config.getini("aiperf_expectations"),
                                                  records),
                              written=f"written {stamp}{at}", ended_early=ended)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, html_report.render(run))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.outcome:
            terminalreporter.write_line(self.outcome)
