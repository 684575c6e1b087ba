"""Runs that end before their last case: a case past ``--aiperf-timeout``, a SIGTERM (a cancelled CI job), a SIGKILL
or a crash inside an arm."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_aiperf.tests.integration.conftest import FAST, NO_CACHE

WRONG = '''

def optimized_wrong(x):
    return x * 3


@pytest.mark.perf_pair(Case(name="wrong", baseline=baseline_double, optimized=optimized_wrong, inputs=inputs,
                            check_shapes=[(7,)], time_shapes=[(1024,)]))
def test_wrong_result(pair, aiperf):
    aiperf.run(pair)
'''

HANGS = '''

def baseline_hangs(x):
    open("hang_started", "w").close()
    time.sleep(60)
    return x * 2


@pytest.mark.perf_pair(Case(name="hangs", baseline=baseline_hangs, optimized=optimized_double, inputs=inputs,
                            check_shapes=[(7,)], time_shapes=[(1024,)]))
def test_z_hangs(pair, aiperf):
    aiperf.run(pair)
'''

SEGFAULTS = '''

def optimized_segfaults(x):
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


@pytest.mark.perf_pair(Case(name="segfaults", baseline=baseline_double, optimized=optimized_segfaults, inputs=inputs,
                            check_shapes=[(7,)], time_shapes=[(1024,)]))
def test_z_segfaults(pair, aiperf):
    aiperf.run(pair)
'''

PASSING = "test_optimized_arm_beats_baseline[double-fp32-1024]"


def add_cases(chapter: pytest.Pytester, *blocks: str) -> None:
    path = chapter.path / "suites/ch90/test_toy.py"
    path.write_text(path.read_text() + "".join(textwrap.dedent(block) for block in blocks))


def recorded(chapter: pytest.Pytester) -> list[str]:
    """The case ids in the toy chapter's expectation file, which must be valid JSON."""
    return list(json.loads((chapter.path / "expectations/cpu/ch90_toy.json").read_text())["entries"])


def junit_cases(path: Path) -> dict[str, list[str]]:
    """Each JUnit test case's name and the tags of its outcome children (failure, error, skipped)."""
    return {case.get("name"): [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            for case in ET.parse(path).iter("testcase")}


def start_run(chapter: pytest.Pytester, *args: str) -> tuple[subprocess.Popen, Path]:
    """Start the toy chapter in a subprocess, return it once the hanging case has started, with its output file."""
    output = chapter.path / "output.txt"
    with output.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", *FAST, *NO_CACHE, *args], cwd=chapter.path,
                                stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (chapter.path / "hang_started").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the hanging case never started:\n{output.read_text()}")
        time.sleep(0.05)
    return proc, output


def end_with(proc: subprocess.Popen, sig: signal.Signals) -> int:
    """Send ``sig`` and return the run's exit code; a run still going 30 s later is killed and fails the test."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the run did not end within 30 s of {sig.name}")


def test_a_hung_case_fails_and_the_run_ends_with_exit_124_after_writing_every_output(chapter):
    add_cases(chapter, WRONG, HANGS)
    result = chapter.runpytest_subprocess(*FAST, "--aiperf-timeout=3", "--junitxml=junit.xml",
                                          "--benchmark-json=bench.json", "--update-expectations", timeout=60)
    assert result.ret == 124, result.stdout.str() + result.stderr.str()
    result.stdout.re_match_lines([
        r".*test_z_hangs\[hangs-fp32-1024\] ran past its time limit of 3 s .* the 2 tests that finished before it.*",
        r"_+ test_wrong_result\[wrong-fp32-1024\] _+",
        r".*optimized disagrees with the float64 reference.*",
        r"_+ test_z_hangs\[hangs-fp32-1024\] _+",
        r".*aiperf \(cases that finished\).*",
        r"double-fp32-1024 .* PASS .*",
        r"FAILED suites/ch90/test_toy.py::test_wrong_result\[wrong-fp32-1024\].*",
        r"FAILED suites/ch90/test_toy.py::test_z_hangs\[hangs-fp32-1024\].*",
        r".*2 failed, 1 passed.*"])
    result.stderr.re_match_lines([r".*in baseline_hangs.*"])
    assert junit_cases(chapter.path / "junit.xml") == {PASSING: [], "test_wrong_result[wrong-fp32-1024]": ["failure"],
                                                       "test_z_hangs[hangs-fp32-1024]": ["failure"]}
    bench = json.loads((chapter.path / "bench.json").read_text())
    assert sorted(b["name"] for b in bench["benchmarks"]) == [PASSING.replace("]", "-baseline]"),
                                                              PASSING.replace("]", "-optimized]")]
    assert recorded(chapter) == ["double-fp32-1024"]
    last_failed = chapter.runpytest_subprocess(*FAST, "--lf", "--co", "-q", timeout=60)
    last_failed.stdout.re_match_lines([r"suites/ch90/test_toy.py::test_wrong_result\[wrong-fp32-1024\]",
                                       r"suites/ch90/test_toy.py::test_z_hangs\[hangs-fp32-1024\]",
                                       r"2 tests collected .*"])


def test_sigterm_interrupts_the_run_which_reports_and_records_the_cases_that_finished(chapter):
    add_cases(chapter, HANGS)
    proc, output = start_run(chapter, "--update-expectations", "--junitxml=junit.xml")
    code = end_with(proc, signal.SIGTERM)
    text = output.read_text()
    assert code == pytest.ExitCode.INTERRUPTED, text
    pytest.LineMatcher(text.splitlines()).re_match_lines([r".*aiperf \(cases that finished\).*",
                                                          r"double-fp32-1024 .* PASS .*",
                                                          r".*ch90_toy .*double-fp32-1024 .* new .*",
                                                          r"!+ .*SIGTERM ended the run.* !+"])
    assert junit_cases(chapter.path / "junit.xml")[PASSING] == []
    assert recorded(chapter) == ["double-fp32-1024"]


def test_a_sigkilled_run_keeps_every_recording_made_before_the_kill(chapter):
    add_cases(chapter, HANGS)
    proc, _ = start_run(chapter, "--update-expectations")
    assert end_with(proc, signal.SIGKILL) == -signal.SIGKILL
    assert recorded(chapter) == ["double-fp32-1024"]


def test_a_segfault_in_an_arm_keeps_every_recording_made_before_it(chapter):
    add_cases(chapter, SEGFAULTS)
    result = chapter.runpytest_subprocess(*FAST, "--update-expectations", timeout=60)
    assert result.ret == -signal.SIGSEGV, result.stdout.str() + result.stderr.str()
    result.stderr.re_match_lines([r"Fatal Python error: Segmentation fault", r".*in optimized_segfaults.*"])
    assert recorded(chapter) == ["double-fp32-1024"]
