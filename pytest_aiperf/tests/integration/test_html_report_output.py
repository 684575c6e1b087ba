"""``--aiperf-html``: the report file of a CPU-backend run, complete under xdist, and written when a run hangs."""

from __future__ import annotations

import re
import signal

import pytest

from pytest_aiperf.tests.integration.conftest import FAST
from pytest_aiperf.tests.integration.test_cancelled_runs import HANGS, WRONG, add_cases, end_with, start_run
from pytest_aiperf.tests.integration.test_outputs_and_xdist import SECOND_CASE, two_cases  # noqa: F401 (fixture)


def rows(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr data-case="([^"]+)" data-verdict="([A-Z]+)"', html)


def test_the_report_holds_each_measured_case_and_the_traceback_of_a_case_that_failed_its_check(run_toy, chapter):
    add_cases(chapter, WRONG)
    result = run_toy("--aiperf-html=out/report.html")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([rf"aiperf: HTML report {re.escape(str(chapter.path))}/out/report.html"])
    html = (chapter.path / "out/report.html").read_text()
    assert rows(html) == [("wrong-fp32-1024", "FAILED"), ("double-fp32-1024", "PASS")]
    assert "<h2>ch90_toy</h2>" in html and "optimized disagrees with the float64 reference" in html
    assert "host clock measures none" in html and '<svg class="chart"' in html


def test_under_xdist_the_report_holds_every_workers_cases(run_toy, two_cases):  # noqa: F811 (fixture)
    result = run_toy("-n", "2", "--aiperf-html=report.html", subprocess=True)
    result.assert_outcomes(passed=3)
    assert sorted(rows((two_cases.path / "report.html").read_text())) == [
        ("double-fp32-1024", "PASS"), ("triple-fp32-256", "PASS"), ("triple-fp32-512", "PASS")]


def test_a_run_that_the_watchdog_ends_still_writes_its_report(chapter):
    add_cases(chapter, WRONG, HANGS)
    result = chapter.runpytest_subprocess(*FAST, "--aiperf-timeout=3", "--aiperf-html=report.html", timeout=60)
    assert result.ret == 124, result.stdout.str()
    html = (chapter.path / "report.html").read_text()
    assert sorted(rows(html)) == [("double-fp32-1024", "PASS"), ("hangs-fp32-1024", "FAILED"),
                                  ("wrong-fp32-1024", "FAILED")]
    assert '<p class="early">This run ended early: ' in html and "ran past its time limit of 3 s" in html


def test_a_run_that_sigterm_interrupts_writes_the_report_of_the_cases_that_finished(chapter):
    add_cases(chapter, HANGS)
    proc, output = start_run(chapter, "--aiperf-html=report.html")
    assert end_with(proc, signal.SIGTERM) == pytest.ExitCode.INTERRUPTED, output.read_text()
    html = (chapter.path / "report.html").read_text()
    assert rows(html) == [("double-fp32-1024", "PASS")]
    assert "This run ended early: interrupted (Ctrl-C or SIGTERM)" in html
