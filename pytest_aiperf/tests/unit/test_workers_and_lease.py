"""One xdist worker per GPU (the pure planning in ``workers``) and one measured case per GPU at a time (``lease``)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_aiperf import lease, workers
from pytest_aiperf.machine import Gpu

GPUS = [Gpu(0, "GPU-aaaa", "NVIDIA H200"), Gpu(1, "GPU-bbbb", "NVIDIA H200")]


def test_auto_starts_one_worker_per_visible_gpu_unless_the_user_fixed_the_count() -> None:
    assert workers.auto_count(GPUS, {}) == 2
    assert workers.auto_count(GPUS, {"PYTEST_XDIST_AUTO_NUM_WORKERS": "5"}) is None
    assert workers.auto_count([], {}) is None


def test_more_workers_than_gpus_is_refused_with_the_ways_out_named() -> None:
    error = workers.count_error(3, GPUS, share=False)
    assert error is not None and "-n 3" in error and "2 visible GPU(s) (GPU-aaaa, GPU-bbbb)" in error, error
    assert "--aiperf-share-gpus" in error and "-n auto" in error


@pytest.mark.parametrize("count, gpus, share", [(2, GPUS, False), (1, GPUS, False), (3, GPUS, True), (8, [], False)])
def test_worker_counts_that_give_each_worker_a_gpu_or_need_none_are_accepted(count, gpus, share) -> None:
    assert workers.count_error(count, gpus, share) is None


def test_each_worker_is_pinned_to_its_own_gpu_by_uuid_round_robin_and_an_explicit_choice_is_kept() -> None:
    envs = [{}, {"CUDA_VISIBLE_DEVICES": "1"}, {}]
    workers.pin(envs, GPUS)
    assert [env["CUDA_VISIBLE_DEVICES"] for env in envs] == ["GPU-aaaa", "1", "GPU-aaaa"]
    assert all(env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" for env in envs)
    assert [env[workers.SLOT_ENV] for env in envs] == ["0/3", "1/3", "2/3"]


def test_workers_split_the_host_cpus_into_disjoint_contiguous_shares_that_cover_them_all() -> None:
    cpus = list(range(10, 20)) + [3]
    shares = [workers.cpu_share(cpus, {workers.SLOT_ENV: f"{i}/3"}) for i in range(3)]
    assert shares == [[3, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19]]


@pytest.mark.parametrize("environ", [{}, {workers.SLOT_ENV: "garbage"}, {workers.SLOT_ENV: "3/3"},
                                     {workers.SLOT_ENV: "0/5"}])
def test_outside_a_pinned_worker_or_with_fewer_cpus_than_workers_every_cpu_stays_allowed(environ) -> None:
    assert workers.cpu_share([2, 0, 1, 3], environ) == [0, 1, 2, 3]


def test_tests_go_out_longest_first_with_those_never_timed_ahead_in_collection_order() -> None:
    ids = ["a", "b", "c", "d", "e"]
    seconds = {"a": 1.0, "b": 30.0, "d": 30.0, "e": 5.0}
    assert [ids[i] for i in workers.longest_first(ids, seconds)] == ["c", "b", "d", "e", "a"]
    assert workers.longest_first(ids, {}) == [0, 1, 2, 3, 4]


def test_the_kept_durations_are_this_runs_plus_the_last_runs_for_tests_not_run_now() -> None:
    assert workers.merged_durations({"a": 1.0, "b": 2.0}, {"b": 9.0, "c": 3.0}) == {"a": 1.0, "b": 9.0, "c": 3.0}


@pytest.mark.parametrize("stored", [None, [], "x", {"a": "slow"}, {"a": -1.0}, {"a": True}, {"a": None}])
def test_cached_durations_that_are_not_seconds_per_test_are_dropped(stored) -> None:
    assert workers.valid_durations(stored) == {}
    assert workers.valid_durations({"ok": 2, **(stored if isinstance(stored, dict) else {})}) == {"ok": 2.0}


def test_without_a_gpu_no_worker_is_pinned() -> None:
    envs = [{}, {}]
    workers.pin(envs, [])
    assert envs == [{}, {}]


HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(3)
sys.exit(0)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_leased_gpu_cannot_be_taken_by_another_process_until_it_is_released(tmp_path: Path) -> None:
    path = lease.lock_path("GPU-aaaa", tmp_path)
    try_take = [sys.executable, "-c", HOLD, str(path)]
    with lease.exclusive("GPU-aaaa", tmp_path) as waited:
        assert waited < 1.0
        assert subprocess.run(try_take).returncode == 3
    assert subprocess.run(try_take).returncode == 0


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_second_user_of_the_gpu_waits_for_the_first_and_reports_the_wait(tmp_path: Path) -> None:
    held = threading.Event()

    def hold() -> None:
        with lease.exclusive("GPU-bbbb", tmp_path):
            held.set()
            time.sleep(0.3)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    with lease.exclusive("GPU-bbbb", tmp_path) as waited:
        assert waited >= 0.2, waited
    thread.join()


def test_no_gpu_means_nothing_to_lease(tmp_path: Path) -> None:
    with lease.exclusive(None, tmp_path) as waited:
        assert waited == 0.0
    assert list(tmp_path.iterdir()) == []
