"""Distributed cases: the plugin starts a case's ranks itself, one process per GPU, and times them in process.

A case declared with ``world_sizes=(2, 4)`` is measured once per world size. For each, ``measure`` spawns that many
processes (``torch.multiprocessing``, start method "spawn", so no CUDA state is inherited), joins them in one
process group (NCCL on GPUs, one GPU per rank; gloo on the CPU) and, in every rank:

- verifies both arms against the reference on fresh inputs (``checks.verify``: every rank checks its own output);
- times the pair with ``measure.sample_pair``, the loop single-GPU cases use, given ``TorchRanks``: each call
  starts after a barrier and is timed by the rank's own clock (CUDA events around the call with no dispatch hold,
  so the launch path is included; the host clock on gloo), with warm caches (no L2 flush) and one input
  placement. A latency case's sample is its metric over the merged timelines of every rank
  (``latency.merged``: TTFT from the rank that emitted the first token, TPOT from the one that emitted the rest),
  the same on every rank. Otherwise a round's time for a call is the slowest rank's (an all-reduce MAX), since a collective step is as
  slow as its slowest rank. An overlap pair's ``Case.compute_only`` (its computation without the communication)
  is warmed up and timed in every round too, the same way; the rounds then run the three calls in each of their
  six orders in turn, so no call always follows the same one.
- rank 0 decides when the warm-up ends (the loop's adaptive warm-up: steady medians, or a quarter of the budget)
  and when sampling stops (the budget, counted from the warm-up's start, and at least ``MIN_ROUNDS`` rounds), and
  broadcasts each decision, so all ranks run the same sequence of collectives and none waits forever.

On GPUs, each world first measures its interconnect ceiling, the bus bandwidth of a 256 MB all-reduce, which the
summary's "% ceil" column then uses for the case's work bytes (a distributed work model counts the bytes each rank
moves over the interconnect, ``work(shape, dtype, world=n)``); that probe times with CUDA events itself, outside
the loop. Every process gets ``ENV`` (NVLink multicast off). Inputs of a distributed case may read
``torch.distributed.get_rank()`` and ``get_world_size()`` to build each rank's shard; ``Case.inputs`` is otherwise
called as for any case. A rank that fails sends its traceback; a world that does not finish within the time limit
is killed and reported, naming the ranks that did not answer.
"""

from __future__ import annotations

import os
import queue as queue_module
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from pytest_aiperf.cases import CaseParam

ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
MIN_ROUNDS = 10


class DistributedError(RuntimeError):
    """A rank failed (its traceback is in the message), or the world did not finish in time."""


@dataclass
class WorldResult:
    """What rank 0 reports: per-round times of the slowest rank (``compute_ms``: of ``Case.compute_only``, empty
    without one), and the correctness checks of every rank. ``backend`` is the ranks' clock ("cuda-events" or
    "cpu-clock"); ``provenance`` names the process group ("nccl" or "gloo") and the rank count; ``latency``, for a
    latency case, each arm's median request-level metrics over its calls, from the ranks' merged timelines."""

    base_ms: list[float] = field(default_factory=list)
    opt_ms: list[float] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    world: int = 1
    backend: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    busbw_gbps: float | None = None
    latency: dict[str, dict[str, float] | None] | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(param: CaseParam, world: int, *, cuda: bool, budget_s: float, timeout_s: float,
            timed: bool = True) -> WorldResult:
    """Run ``param`` on ``world`` ranks and return rank 0's report; raise ``DistributedError`` on any failure.
    ``timed=False`` only verifies (every rank), as on a machine without GPUs."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    settings = {"port": free_port(), "cuda": cuda, "budget_s": budget_s, "timed": timed, "parent": os.getpid()}
    procs = [ctx.Process(target=rank_main, args=(rank, world, param, settings, results), daemon=True)
             for rank in range(world)]
    for proc in procs:
        proc.start()
    answers: dict[int, tuple[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        failed_at = None
        while len(answers) < world:
            now = time.monotonic()
            dead = [rank for rank, p in enumerate(procs) if p.exitcode not in (None, 0) and rank not in answers]
            if failed_at is None and (dead or any(s == "error" for s, _ in answers.values())):
                failed_at = now  # give the other ranks a moment to report, so the message names the first cause
            if now > deadline or (failed_at is not None and now - failed_at > 2.0):
                break
            try:
                status, rank, payload = results.get(timeout=0.2)
                answers[rank] = (status, payload)
            except queue_module.Empty:
                continue
    finally:
        killed = set()
        for rank, proc in enumerate(procs):
            proc.join(timeout=5 if len(answers) == world else 0.1)
            if proc.is_alive():
                killed.add(rank)
                proc.kill()
                proc.join()
    problems = [f"rank {rank} exited with code {p.exitcode} without answering" for rank, p in enumerate(procs)
                if rank not in answers and rank not in killed and p.exitcode not in (None, 0)]
    missing = sorted(set(range(world)) - set(answers))
    if missing and not problems:
        problems.append(f"ranks {missing} did not finish within {timeout_s:g} s (a hung collective or kernel)")
    problems += [f"rank {rank} failed:\n{payload}" for rank, (status, payload) in sorted(answers.items())
                 if status == "error"]
    if problems:
        raise DistributedError(f"{param.id} on {world} ranks: " + "\n".join(problems))
    result: WorldResult = answers[0][1]
    return result


def die_with_parent() -> None:
    """Ask Linux to kill this rank when the process that started it dies (a SIGKILLed pytest, or the watchdog
    ending a hung run with ``os._exit``, which skips multiprocessing's clean-up of daemon children)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the daemon flag still ends ranks at a normal exit
        pass


def rank_main(rank: int, world: int, param: CaseParam, settings: dict[str, Any], results: Any) -> None:
    """One rank: join the group, verify, time, report (rank 0 sends the times), leave the group."""
    die_with_parent()
    if os.getppid() != settings["parent"]:  # the parent died before the request above took effect
        os._exit(1)
    os.environ.update(ENV, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(settings["port"]))
    import torch
    import torch.distributed as dist

    from pytest_aiperf import clocks

    try:
        if settings["cuda"]:
            torch.cuda.set_device(rank)
        device = "cuda" if settings["cuda"] else "cpu"
        backend = "nccl" if settings["cuda"] else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world,
                                **({"device_id": torch.device("cuda", rank)} if settings["cuda"] else {}))
        result = _measure_rank(param, device, settings["budget_s"] if settings["timed"] else None, world)
        result.backend = clocks.CudaEvents.name if settings["cuda"] else clocks.CpuClock.name
        if rank == 0:
            result.provenance = {**_provenance(device, world), "process_group": backend}
        results.put(("ok", rank, result if rank == 0 else None))
    except BaseException:  # every failure, including a collective's, goes back with its traceback
        results.put(("error", rank, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _provenance(device: str, world: int) -> dict[str, Any]:
    import torch

    from pytest_aiperf import machine

    gpu = torch.cuda.get_device_properties(torch.cuda.current_device()) if device == "cuda" else None
    return {"gpu": gpu.name if gpu else None, "sm_count": gpu.multi_processor_count if gpu else None,
            "ranks": world, "driver": machine.static_info().get("driver"), **machine.software_versions()}


def _allreduce_busbw_gbps(world: int, nbytes: int = 256 << 20, reps: int = 10) -> float:
    """The world's interconnect ceiling: the bus bandwidth of a large bf16 NCCL all-reduce, best of ``reps``
    (bus bytes = 2 (n - 1) / n x message bytes, the nccl-tests convention), agreed by every rank (the slowest)."""
    import torch
    import torch.distributed as dist

    message = torch.ones(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        dist.all_reduce(message)
    best = float("inf")
    for _ in range(reps):
        dist.barrier()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dist.all_reduce(message)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end))
    slowest = torch.tensor([best], dtype=torch.float64, device="cuda")
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    del message
    return 2 * (world - 1) / world * nbytes / (float(slowest) / 1e3) / 1e9


class TorchRanks:
    """``measure.Ranks`` over the default ``torch.distributed`` process group: a barrier, an all-reduce MAX of a
    round's times, and rank 0's flag broadcast, each with tensors on ``device``."""

    def __init__(self, device: str) -> None:
        self.device = device

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def slowest(self, times: list[float]) -> list[float]:
        import torch
        import torch.distributed as dist

        values = torch.tensor(times, dtype=torch.float64, device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return [float(v) for v in values.tolist()]

    def agree(self, flag: bool) -> bool:
        import torch
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64, device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())


def _measure_rank(param: CaseParam, device: str, budget_s: float | None, world: int) -> WorldResult:
    import torch.distributed as dist

    from pytest_aiperf import arms, checks, clocks, latency, measure

    report = checks.verify(param, device)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, report.to_json())
    out = WorldResult(checks=gathered, world=world)
    if budget_s is None:
        return out
    case = param.case
    inputs = list(case.inputs(param.shape, param.dtype, param.seeds(1)[0], device))
    clock: Any = clocks.CudaEvents() if device == "cuda" else clocks.CpuClock()
    if device == "cuda":
        out.busbw_gbps = _allreduce_busbw_gbps(world)
    if case.goal == "latency":
        clock = latency.Latency(clock, case.metric, gather=_gathered)
    base, opt = arms.timed(case.baseline, inputs), arms.timed(case.optimized, inputs)
    samples = measure.sample_pair(clock, base, opt, [inputs], cold=False, hide_dispatch=False,
                                  budget_s=budget_s, gate=None, min_rounds=MIN_ROUNDS,
                                  compute_only=case.compute_only, ranks=TorchRanks(device))
    out.base_ms, out.opt_ms, out.compute_ms = samples.base_ms, samples.opt_ms, samples.compute_ms
    if case.goal == "latency":
        out.latency = {"baseline": clock.summary(base), "optimized": clock.summary(opt)}
    return out


def _gathered(timeline: Any) -> list[Any]:
    """Every rank's timeline of this call, in rank order."""
    import torch.distributed as dist

    timelines: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(timelines, timeline)
    return timelines
