"""``pytest -n``: one xdist worker per GPU, pinned before CUDA can start, kept through a worker restart.

The GPUs are faked by a conftest that replaces ``machine.visible_gpus`` in the controller and the workers (this
machine has none); what is checked is the environment each worker's tests run in.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

FAKE_GPUS = '''
from pytest_aiperf import machine

GPUS = [machine.Gpu(0, "GPU-aaaa", "NVIDIA H200"), machine.Gpu(1, "GPU-bbbb", "NVIDIA H200")]
machine.visible_gpus = lambda: list(GPUS)
'''

REPORTING_TESTS = '''
import os
import time
from pathlib import Path

import pytest

SEEN = Path(__file__).parent / "seen.txt"
CRASHED = Path(__file__).parent / "crashed"


def report_environment():
    with SEEN.open("a") as out:
        out.write(f"{os.environ['PYTEST_XDIST_WORKER']} {os.environ.get('CUDA_VISIBLE_DEVICES')} "
                  f"{os.environ.get('CUDA_DEVICE_ORDER')}\\n")


@pytest.mark.parametrize("n", range(8))
def test_reports_its_worker_environment(n):
    report_environment()
    time.sleep(float(os.environ.get("TEST_SECONDS", "0")))
    if os.environ.get("CRASH_GW0") and os.environ["PYTEST_XDIST_WORKER"] == "gw0" and not CRASHED.exists():
        CRASHED.touch()
        os._exit(1)
'''


@pytest.fixture
def bystander(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project on a machine with two (fake) GPUs that has no performance pairs: the plugin is only installed."""
    pytester.makeconftest(textwrap.dedent(FAKE_GPUS))
    pytester.makepyfile(test_env=textwrap.dedent(REPORTING_TESTS))
    return pytester


@pytest.fixture
def fake_gpus(bystander: pytest.Pytester) -> pytest.Pytester:
    """The same project, opted in to the plugin by its ini (``aiperf = true``), as a project with perf suites is."""
    bystander.makeini("[pytest]\naiperf = true\n")
    return bystander


def seen(pytester: pytest.Pytester) -> dict[str, set[tuple[str, str]]]:
    by_worker: dict[str, set[tuple[str, str]]] = {}
    for line in Path(pytester.path, "seen.txt").read_text().splitlines():
        worker, cvd, order = line.split()
        by_worker.setdefault(worker, set()).add((cvd, order))
    return by_worker


def test_n_auto_starts_one_worker_per_gpu_each_seeing_only_its_own(fake_gpus: pytest.Pytester) -> None:
    result = fake_gpus.runpytest_subprocess("-n", "auto", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)
    assert seen(fake_gpus) == {"gw0": {("GPU-aaaa", "PCI_BUS_ID")}, "gw1": {("GPU-bbbb", "PCI_BUS_ID")}}


def test_more_workers_than_gpus_is_a_usage_error_unless_sharing_is_asked_for(fake_gpus: pytest.Pytester) -> None:
    refused = fake_gpus.runpytest_subprocess("-n", "3", "-p", "no:cacheprovider")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*-n 3 starts more xdist workers than the 2 visible GPU(s)*--aiperf-share-gpus*"])
    shared = fake_gpus.runpytest_subprocess("-n", "3", "--aiperf-share-gpus", "-p", "no:cacheprovider")
    shared.assert_outcomes(passed=8)
    assert {gpu for gpus in seen(fake_gpus).values() for gpu, _ in gpus} <= {"GPU-aaaa", "GPU-bbbb"}


def test_a_worker_restarted_after_a_crash_keeps_the_crashed_workers_gpu(fake_gpus: pytest.Pytester,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRASH_GW0", "1")
    monkeypatch.setenv("TEST_SECONDS", "1")  # the survivor must not finish the 7 other tests before gw2 starts
    result = fake_gpus.runpytest_subprocess("-n", "2", "--max-worker-restart=1", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*replacing crashed worker gw0*"])
    by_worker = seen(fake_gpus)
    assert "gw2" in by_worker, by_worker
    assert by_worker["gw2"] == by_worker["gw0"] == {("GPU-aaaa", "PCI_BUS_ID")}, by_worker


def test_a_project_without_perf_cases_keeps_its_xdist_run_and_its_own_expectations_folder(
        bystander: pytest.Pytester) -> None:
    snapshots = bystander.mkdir("expectations") / "h200"
    snapshots.mkdir()
    (snapshots / "ch01.json").write_text("a snapshot tool's file, not ours")
    result = bystander.runpytest_subprocess("-n", "3")
    result.assert_outcomes(passed=8)
    assert not [line for line in result.outlines if line.startswith("aiperf")], result.outlines
    assert not (bystander.path / ".pytest_cache/v/aiperf").exists()
    assert {gpu for gpus in seen(bystander).values() for gpu, _ in gpus} == {"None"}


def test_selecting_perf_cases_with_m_opts_in_before_collection(bystander: pytest.Pytester) -> None:
    refused = bystander.runpytest_subprocess("-n", "3", "-m", "perf or not perf", "-p", "no:cacheprovider")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*-n 3 starts more xdist workers than the 2 visible GPU(s)*"])
