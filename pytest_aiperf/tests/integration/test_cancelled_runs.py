"""Runs that end before their last case: a case past ``--aiperf-timeout``, a SIGTERM (a cancelled CI job), a SIGKILL
or a crash inside an arm, and a hung rank of a distributed case. Each run keeps what the README says it keeps."""

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

DISTRIBUTED = '''
"""A distributed case whose optimized arm hangs on rank 1, then a single-process case."""
import time

import pytest
import torch
import torch.distributed as dist

from pytest_aiperf import Case


def shard(shape, dtype, seed, device):
    generator = torch.Generator().manual_seed(seed * 31 + dist.get_rank())
    return (torch.randn(shape, generator=generator, dtype=torch.float32).to(device),)


def summed(x):
    out = x.clone()
    dist.all_reduce(out)
    return out


def summed_hangs_on_rank_1(x):
    if dist.get_rank() == 1:
        time.sleep(600)
    return summed(x)


def inputs(shape, dtype, seed, device):
    return (torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32).to(device),)


def baseline_double(x):
    time.sleep(0.003)
    return x * 2


def optimized_double(x):
    return x + x


@pytest.mark.perf_pair(Case(name="hangs_on_rank_1", baseline=summed, optimized=summed_hangs_on_rank_1, inputs=shard,
                            check_shapes=[(5, 7)], time_shapes=[(8, 64)], world_sizes=(2,)))
def test_a_collective(pair, aiperf):
    aiperf.run(pair)


@pytest.mark.perf_pair(Case(name="double", baseline=baseline_double, optimized=optimized_double, inputs=inputs,
                            check_shapes=[(7,)], time_shapes=[(1024,)], min_speedup=1.5))
def test_b_after_it(pair, aiperf):
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


def test_a_hung_rank_fails_only_its_case_and_the_run_goes_on(pytester):
    """The ranks' own limit (``--aiperf-timeout``) passes first: the ranks are killed and the case fails; the
    process watchdog waits ``watchdog.DISTRIBUTED_GRACE_S`` longer and never fires."""
    pytester.makepyfile(test_collectives=textwrap.dedent(DISTRIBUTED))
    result = pytester.runpytest_subprocess("--aiperf-backend=cpu", "--aiperf-budget=0.3", "--aiperf-timeout=5",
                                           "-p", "no:randomly", "-p", "no:cacheprovider", timeout=60)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.re_match_lines([r".*DistributedError: hangs_on_rank_1-fp32-8x64-2gpus on 2 ranks: ranks \[.*1\] did "
                                  r"not finish within 5 s.*",
                                  r"FAILED test_collectives.py::test_a_collective\[hangs_on_rank_1-fp32-8x64-2gpus\].*"])
