"""Distributed cases on the CPU: ranks spawned by the plugin over gloo, verified on every rank and timed in process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from pytest_aiperf import Case, distributed
from pytest_aiperf.cases import CaseParam


def shard(shape, dtype, seed, device):
    """Each rank's own gradients: the seed and the rank pick the values."""
    generator = torch.Generator().manual_seed(seed * 31 + dist.get_rank())
    return (torch.randn(shape, generator=generator, dtype=torch.float32).to(device),)


def all_reduce_rows(grads):
    """One all-reduce per row (per gradient tensor)."""
    out = grads.clone()
    for row in out:
        dist.all_reduce(row)
    return out


def all_reduce_flat(grads):
    """One all-reduce of the whole flat buffer."""
    out = grads.clone()
    dist.all_reduce(out)
    return out


def all_reduce_wrong(grads):
    """Skips the reduction of the last row: every rank then holds its own last row, not the sum."""
    out = grads.clone()
    dist.all_reduce(out[:-1])
    return out


def fail_on_rank_one(grads):
    if dist.get_rank() == 1:
        raise RuntimeError("rank 1 cannot reduce")
    return all_reduce_flat(grads)


def die_on_rank_one(grads):
    if dist.get_rank() == 1:
        os.kill(os.getpid(), 9)
    return all_reduce_flat(grads)


def hang_on_rank_one(grads):
    if dist.get_rank() == 1:
        if os.environ.get("HANG_MARKER"):
            Path(os.environ["HANG_MARKER"]).touch()
        time.sleep(600)
    return all_reduce_flat(grads)


def own_rows_copied(grads):
    """The pair's computation without its communication (here, the copy both arms make)."""
    return grads.clone()


def param(optimized):
    case = Case(name="bucketed_allreduce", baseline=all_reduce_rows, optimized=optimized, inputs=shard,
                check_shapes=[(5, 7)], time_shapes=[(16, 256)], world_sizes=(2,))
    return case.params()[0]


def test_a_distributed_case_is_verified_on_every_rank_and_timed_by_the_slowest_rank() -> None:
    result = distributed.measure(param(all_reduce_flat), 2, cuda=False, budget_s=0.2, timeout_s=120)
    assert result.world == 2 and result.backend == "cpu-clock"
    assert (result.provenance["process_group"], result.provenance["ranks"]) == ("gloo", 2)
    assert len(result.checks) == 2 and all(check["err_optimized"] < 1e-6 for check in result.checks), result.checks
    assert len(result.base_ms) == len(result.opt_ms) >= distributed.MIN_ROUNDS
    assert all(t > 0 for t in result.base_ms + result.opt_ms)


def overlap_param() -> CaseParam:
    case = Case(name="bucketed_allreduce", baseline=all_reduce_rows, optimized=all_reduce_flat, inputs=shard,
                check_shapes=[(5, 7)], time_shapes=[(16, 256)], world_sizes=(2,), compute_only=own_rows_copied)
    return case.params()[0]


def test_an_overlap_pairs_computation_alone_is_timed_in_every_round_by_the_slowest_rank() -> None:
    result = distributed.measure(overlap_param(), 2, cuda=False, budget_s=0.2, timeout_s=120)
    assert len(result.compute_ms) == len(result.base_ms) == len(result.opt_ms) >= distributed.MIN_ROUNDS
    assert all(t > 0 for t in result.compute_ms)


def test_the_record_of_an_overlap_pair_carries_its_computation_alone_as_an_arm(tmp_path: Path) -> None:
    from pytest_aiperf.device import Device
    from pytest_aiperf.options import Options
    from pytest_aiperf.pipeline import Location, Measurer

    options = Options(backend="cpu", budget_s=0.2)
    measurer = Measurer(options, Device(options, tmp_path))
    rec = measurer.run(overlap_param(), Location(nodeid="t::overlap", module="t.py", func="t", chapter="ch99_toy"))
    compute = rec["compute_only"]
    assert len(compute["samples_ms"]) == len(rec["baseline"]["samples_ms"]) >= distributed.MIN_ROUNDS
    assert compute["q1_ms"] <= compute["median_ms"] <= compute["q3_ms"] and compute["median_ms"] > 0


def test_compute_only_is_refused_on_a_case_that_is_not_distributed() -> None:
    with pytest.raises(ValueError, match="compute_only, an overlap pair's computation without its communication"):
        Case(name="peer_copy", baseline=all_reduce_rows, optimized=all_reduce_flat, inputs=shard,
             check_shapes=[(5, 7)], time_shapes=[(16, 256)], devices=2, compute_only=own_rows_copied)


def test_a_wrong_collective_fails_correctness_and_names_the_rank() -> None:
    with pytest.raises(distributed.DistributedError, match=r"rank \d failed:(.|\n)*optimized disagrees"):
        distributed.measure(param(all_reduce_wrong), 2, cuda=False, budget_s=0.2, timeout_s=120)


def test_an_exception_on_one_rank_is_reported_with_its_traceback() -> None:
    with pytest.raises(distributed.DistributedError, match=r"rank 1 failed:(.|\n)*rank 1 cannot reduce"):
        distributed.measure(param(fail_on_rank_one), 2, cuda=False, budget_s=0.2, timeout_s=120)


def test_a_rank_that_dies_ends_the_world_with_the_missing_ranks_named() -> None:
    with pytest.raises(distributed.DistributedError, match=r"rank 1 exited with code -9 without answering"):
        distributed.measure(param(die_on_rank_one), 2, cuda=False, budget_s=0.2, timeout_s=60)


def test_a_hung_rank_ends_the_world_at_the_time_limit_with_every_rank_killed() -> None:
    with pytest.raises(distributed.DistributedError, match=r"ranks \[0, 1\] did not finish within 8 s"):
        distributed.measure(param(hang_on_rank_one), 2, cuda=False, budget_s=0.2, timeout_s=8)


def test_a_distributed_work_model_is_told_the_rank_count_and_ids_name_it() -> None:
    def ring_bytes(shape, dtype, world):
        from pytest_aiperf import Work

        return Work(bytes=2 * (world - 1) / world * 4 * shape[0] * shape[1])

    case = Case(name="bucketed_allreduce", baseline=all_reduce_rows, optimized=all_reduce_flat, inputs=shard,
                work=ring_bytes, check_shapes=[(5, 7)], time_shapes=[(16, 256)], world_sizes=(2, 4))
    two, four = case.params()
    assert (two.id, four.id) == ("bucketed_allreduce-fp32-16x256-2gpus", "bucketed_allreduce-fp32-16x256-4gpus")
    assert (two.work_model().bytes, four.work_model().bytes) == (16 * 256 * 4, 1.5 * 16 * 256 * 4)


def test_a_distributed_case_is_compared_with_the_all_reduce_bus_bandwidth_not_the_copy_rate() -> None:
    from pytest_aiperf.record import achieved

    record = {"work": {"bytes": 400e6}, "optimized": {"median_ms": 1.0}, "dtype": "bf16",
              "ceilings": {"busbw_gbps": 400.0}}
    assert achieved(record)["pct_bw"] == pytest.approx(100.0)


@pytest.mark.parametrize("sizes", [(1,), (2, 0), ("2",)])
def test_world_sizes_are_rank_counts_of_two_or_more(sizes) -> None:
    with pytest.raises(ValueError, match="world_sizes are rank counts of 2 or more"):
        Case(name="bucketed_allreduce", baseline=all_reduce_rows, optimized=all_reduce_flat, inputs=shard,
             check_shapes=[(5, 7)], time_shapes=[(16, 256)], world_sizes=sizes)


def test_a_case_driving_two_gpus_from_one_process_is_named_and_counted_by_them() -> None:
    case = Case(name="peer_copy", baseline=all_reduce_rows, optimized=all_reduce_flat, inputs=shard,
                check_shapes=[(5, 7)], time_shapes=[(16, 256)], devices=2)
    (only,) = case.params()
    assert (only.id, only.gpus, only.world) == ("peer_copy-fp32-16x256-2gpus", 2, 1)


@pytest.mark.parametrize("devices, sizes", [(0, ()), (2, (2,)), ("2", ())])
def test_devices_is_a_gpu_count_of_one_process_and_excludes_ranks(devices, sizes) -> None:
    with pytest.raises(ValueError, match="devices is the GPU count of one process"):
        Case(name="peer_copy", baseline=all_reduce_rows, optimized=all_reduce_flat, inputs=shard,
             check_shapes=[(5, 7)], time_shapes=[(16, 256)], devices=devices, world_sizes=sizes)


@pytest.mark.parametrize("worker, visible, why", [
    (True, 4, "uses 2 GPUs, which an xdist worker (one GPU) cannot"),
    (False, 1, "needs 2 GPUs; this process sees 1"),
])
def test_a_two_gpu_case_is_skipped_in_an_xdist_worker_and_where_one_gpu_is_visible(worker, visible, why,
                                                                                    tmp_path: Path) -> None:
    from pytest_aiperf.device import Device, Skip
    from pytest_aiperf.machine import Gpu
    from pytest_aiperf.options import Options
    from pytest_aiperf.pipeline import Measurer

    case = Case(name="peer_copy", baseline=all_reduce_rows, optimized=all_reduce_flat, inputs=shard,
                check_shapes=[(5, 7)], time_shapes=[(16, 256)], devices=2)
    device = Device(Options(xdist_worker=worker), tmp_path)
    device.__dict__["gpus"] = [Gpu(i, f"GPU-{i}", "NVIDIA H200") for i in range(visible)]
    device.__dict__["hardware"] = "h200"
    with pytest.raises(Skip, match=why.replace("(", r"\(").replace(")", r"\)")):
        Measurer(Options(xdist_worker=worker), device)._check_gpu_count(case.params()[0])
    assert device.hardware_for(2) == "2x_h200" and device.hardware_for(1) == "h200"


KILLED_PARENT = """
import sys
from pytest_aiperf import distributed
from pytest_aiperf.tests.unit import test_distributed as t
distributed.measure(t.param(t.hang_on_rank_one), 2, cuda=False, budget_s=0.2, timeout_s=600)
"""


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_ranks_die_with_a_killed_parent_instead_of_holding_the_gpus(tmp_path: Path) -> None:
    marker = tmp_path / "rank-1-hangs"
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT], env={**os.environ, "HANG_MARKER": str(marker)})
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    ranks = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True,
                                                text=True).stdout.split()]
    parent.kill()
    parent.wait()
    time.sleep(2)
    alive = [pid for pid in ranks if _running(pid)]
    assert marker.exists() and len(ranks) >= 2, f"rank 1 never reached its hang; children {ranks}"
    assert not alive, f"children {ranks}: still running after the parent was killed: {alive}"
