"""Measure a pair: the one timing loop, ``sample_pair``, for single-process cases and for every rank of a
distributed case (``distributed`` passes its ranks in; it has no loop of its own).

What else times, outside that loop: ``measure_ceilings`` (the device's copy rate and matmul throughput, once per
process, best of a few ``time_call``s), ``energy_per_call`` (back-to-back calls over the NVML energy counter),
``distributed._allreduce_busbw_gbps`` (CUDA events around a large all-reduce, a world's interconnect ceiling) and
``clocks.CudaEvents.launch_latency_us`` (host time per kernel launch, which ``host.pin_host`` ranks CPUs by).

Method of the loop (reported with every result):

- **Per-call device time.** Each call is timed by the clock in ``clocks``: on a GPU, CUDA events behind a dispatch
  hold that adapts to the host's dispatch time, so the events time the device's work from its first kernel. Cases
  whose lesson is the cost of dispatch itself declare ``host_dispatch="timed"`` and run without the hold.
  Synchronized host wall time of the same call (less the hold) is kept beside the event time: work left on an
  unjoined side stream shows as events far shorter than wall.
- **Cold or warm cache.** Cold cases read a buffer of twice the device's L2 before each call (outside the events),
  evicting the case's data. A read leaves clean lines, so the timed call does not also pay for writing back a
  flush's dirty lines (a zeroing flush costs a following HBM-bound kernel ~17 us on an H100: 50 MB at 3 TB/s).
  Warm cases declare that they live in cache and skip it.
- **Warm-up** alternates the arms until each ran at least three times, compilation is done, and the medians of
  consecutive windows agree within 5% (clocks steady), within a capped share of the budget.
- **Interleaving.** Rounds time both arms on the identical inputs, alternating which goes first (A B, B A, ...).
  An overlap pair's ``compute_only`` (distributed cases) is a third call in every round, the three in each of
  their six orders in turn.
- **Placements.** Where a buffer lands in device memory moves a single-pass kernel by ~5% on an H100 (measured:
  one GELU over the same 100 MB took 76.4-82.0 us depending only on the input's allocation). So the inputs are
  copied to up to ``PLACEMENTS`` addresses; rounds cycle through the copies and one sample is the mean over a
  cycle, which averages placement instead of sampling one per process.
- **Host CPU.** Launch-bound arms run at the speed of the host core issuing launches; on the VM the launch latency
  differed by 1.4x between vCPUs (7.4 vs 10.4 us). ``host.pin_host`` measures every allowed CPU and keeps the
  thread on the faster half, so the result does not depend on where the scheduler happened to start the process.
- **Stopping.** After a minimum number of rounds, sampling stops as soon as the speedup's bootstrap interval lies
  wholly on one side of the gate, or when the budget runs out.
- **Ranks.** On the ranks of a distributed case, each call follows a barrier, a round's time for a call is the
  slowest rank's (a collective step is as slow as its slowest rank), and rank 0 decides when the warm-up and the
  sampling end, so every rank runs the same sequence of collectives.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from itertools import permutations
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Protocol, Sequence

from pytest_aiperf.clocks import TimingBackend
from pytest_aiperf.stats import speedup_ci
from pytest_aiperf.verdict import Gate, is_decisive

MIN_ROUNDS = 20
MAX_ROUNDS = 20000
WARMUP_SHARE = 0.25
PLACEMENTS = 8
PLACEMENT_BYTES = 1 << 30


class Ranks(Protocol):
    """The ranks that time one case together (``distributed.TorchRanks``); ``LocalRanks`` when one process times
    alone. ``barrier`` runs before every timed call; ``slowest`` takes this rank's values of a round and returns
    each one's maximum over the ranks; ``agree`` returns rank 0's ``flag`` on every rank. Every decision that ends
    a loop goes through ``agree``, so all ranks run the same calls and collectives."""

    def barrier(self) -> None: ...

    def slowest(self, times: list[float]) -> list[float]: ...

    def agree(self, flag: bool) -> bool: ...


class LocalRanks:
    """One process timing alone: no collectives."""

    def barrier(self) -> None:
        return None

    def slowest(self, times: list[float]) -> list[float]:
        return times

    def agree(self, flag: bool) -> bool:
        return flag


@dataclass
class Samples:
    """Paired samples of one measurement: ``base_ms[i]`` and ``opt_ms[i]`` come from cycle i, each the mean over
    one call per input placement (``placements`` calls per arm per cycle); on ranks, the slowest rank's mean.
    ``compute_ms``: the same of ``compute_only``, empty without one."""

    base_ms: list[float] = field(default_factory=list)
    opt_ms: list[float] = field(default_factory=list)
    base_wall_ms: list[float] = field(default_factory=list)
    opt_wall_ms: list[float] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    warmup_calls: int = 0
    placements: int = 1
    seconds: float = 0.0


def _timed(backend: TimingBackend, fn: Callable[..., Any], args: Sequence[Any], cold: bool, hide_dispatch: bool,
           ranks: Ranks) -> tuple[float, float]:
    before = getattr(fn, "before_call", None)  # a stateful arm's reset (``arms.StatefulCall``), outside the clock
    if before is not None:
        before()
    if cold:
        backend.flush()
    ranks.barrier()
    return backend.time_call(fn, args, hide_dispatch=hide_dispatch)


def warm_up(backend: TimingBackend, calls: Sequence[Callable[..., Any]], arg_sets: Sequence[Sequence[Any]], *,
            cold: bool, max_s: float, hide_dispatch: bool = True, ranks: Ranks | None = None, min_calls: int = 3,
            window: int = 5) -> tuple[int, float]:
    """Run the calls in turn (over every placement) until compiled and steady, as rank 0 judges it; return the
    times each call ran and the median time of one call of each, in ms."""
    from statistics import median

    ranks = ranks or LocalRanks()
    times: list[list[float]] = [[] for _ in calls]
    start = time.perf_counter()
    least = max(min_calls, len(arg_sets))
    window = -(-window // len(arg_sets)) * len(arg_sets)  # whole cycles, so each window sees every placement
    while True:
        args = arg_sets[len(times[0]) % len(arg_sets)]
        for fn, series in zip(calls, times):
            series.append(_timed(backend, fn, args, cold, hide_dispatch, ranks)[0])
        done = len(times[0]) >= least and time.perf_counter() - start >= max_s
        steady = len(times[0]) >= max(least, 2 * window) and all(_steady(t[-2 * window:], window) for t in times)
        if ranks.agree(done or steady):
            return len(times[0]), sum(median(t[-window:]) for t in times)


def _steady(times: list[float], window: int) -> bool:
    from statistics import median

    before, after = median(times[:window]), median(times[window:])
    return abs(after - before) <= 0.05 * before


def _agreed_count(ranks: Ranks, wanted: int, most: int) -> int:
    """Rank 0's ``wanted`` (clamped to 1..``most``) on every rank, agreed one step at a time."""
    count = most
    while count > 1 and ranks.agree(wanted < count):
        count -= 1
    return count


def sample_pair(backend: TimingBackend, base: Callable[..., Any], opt: Callable[..., Any],
                arg_sets: Sequence[Sequence[Any]], *, cold: bool, budget_s: float, gate: Gate | None,
                telemetry: Any = None, hide_dispatch: bool = True, min_rounds: int = MIN_ROUNDS,
                compute_only: Callable[..., Any] | None = None, ranks: Ranks | None = None,
                timed_phase: Callable[[], ContextManager[Any]] = nullcontext, warm: bool = True) -> Samples:
    """Warm up, then time interleaved cycles over the input placements until the gate is decided or the budget is
    spent. Fewer placements are used when the budget could not otherwise afford ``min_rounds`` cycles.

    ``compute_only`` is timed in every round too; the calls then run in each of their orders in turn (A B C,
    A C B, ...; with two, A B, B A, ...), the order moving on at every placement. With ``ranks``, every call
    follows a barrier, a cycle's samples are the slowest rank's (``ranks.slowest``), and the warm-up's end, the
    placement count and the stop are rank 0's (``ranks.agree``). The deadline ends sampling after 3 cycles alone,
    but not before ``min_rounds`` on ranks: a distributed case has no gate, and this keeps the floor its own loop
    had before it came here. ``timed_phase()`` is entered after the warm-up, around the sampled cycles
    (``arms.no_recompile``: a compile among the samples fails the case). ``warm=False`` skips the warm-up, for
    samples that are each a first call (``coldstart``)."""
    alone, ranks = ranks is None, ranks or LocalRanks()
    calls = [base, opt, *([compute_only] if compute_only is not None else [])]
    out = Samples()
    begin = time.perf_counter()
    if telemetry is not None:
        out.telemetry.append(telemetry.sample())
    out.warmup_calls, round_ms = warm_up(backend, calls, arg_sets, cold=cold, max_s=WARMUP_SHARE * budget_s,
                                         hide_dispatch=hide_dispatch, ranks=ranks) if warm else (0, 0.0)
    affordable = int((1 - WARMUP_SHARE) * budget_s * 1e3 / max(round_ms * min_rounds, 1e-6))
    sets = list(arg_sets[:_agreed_count(ranks, affordable, len(arg_sets))])
    out.placements = len(sets)
    with timed_phase():
        _cycles(out, backend, calls, sets, cold=cold, hide_dispatch=hide_dispatch, ranks=ranks, telemetry=telemetry,
                gate=gate, deadline=begin + budget_s, floor=3 if alone else min_rounds, min_rounds=min_rounds)
    if telemetry is not None:
        out.telemetry.append(telemetry.sample())
    out.seconds = time.perf_counter() - begin
    return out


def _cycles(out: Samples, backend: TimingBackend, calls: list[Callable[..., Any]], sets: list[Sequence[Any]], *,
            cold: bool, hide_dispatch: bool, ranks: Ranks, telemetry: Any, gate: Gate | None, deadline: float,
            floor: int, min_rounds: int) -> None:
    """The sampled cycles of ``sample_pair``, appended to ``out`` until the gate is decided or the deadline passes."""
    series = [out.base_ms, out.opt_ms, out.compute_ms]
    orders = list(permutations(range(len(calls))))
    count = len(sets)
    next_check, next_sample = min_rounds, time.perf_counter() + 0.5
    for cycle in range(MAX_ROUNDS):
        event, wall = [0.0] * len(calls), [0.0] * len(calls)
        for j, args in enumerate(sets):
            for slot in orders[(cycle * count + j) % len(orders)]:
                event_ms, wall_ms = _timed(backend, calls[slot], args, cold, hide_dispatch, ranks)
                event[slot] += event_ms
                wall[slot] += wall_ms
        *event, base_wall, opt_wall = ranks.slowest([t / count for t in (*event, wall[0], wall[1])])
        for slot, value in enumerate(event):
            series[slot].append(value)
        out.base_wall_ms.append(base_wall)
        out.opt_wall_ms.append(opt_wall)
        rounds = cycle + 1
        now = time.perf_counter()
        if telemetry is not None and now >= next_sample:
            out.telemetry.append(telemetry.sample())
            next_sample = now + 0.5
        stop = now >= deadline and rounds >= floor
        if not stop and gate is not None and rounds >= next_check:
            next_check = int(rounds * 1.25) + 1
            stop = is_decisive(speedup_ci(out.base_ms, out.opt_ms, resamples=1000), gate)
        if ranks.agree(stop):
            break


def placements(inputs: Sequence[Any], *, count: int | None = None, max_bytes: int | None = None,
               seed: int = 0) -> list[tuple[Any, ...]]:
    """The inputs at up to ``count`` device addresses: the first set is ``inputs`` itself, the others clone every
    CUDA tensor behind a spacer allocation of random size (so the copies do not land in a regular pattern).
    Copies are capped at ``max_bytes`` in all; host objects are shared between sets."""
    import torch

    device_tensors = [a for a in inputs if isinstance(a, torch.Tensor) and a.is_cuda]
    nbytes = sum(t.numel() * t.element_size() for t in device_tensors)
    if not device_tensors or nbytes == 0:
        return [tuple(inputs)]
    count = PLACEMENTS if count is None else count
    max_bytes = PLACEMENT_BYTES if max_bytes is None else max_bytes
    extra = max(0, min(count - 1, max_bytes // nbytes))
    rng = random.Random(seed)
    sets, spacers = [tuple(inputs)], []
    for _ in range(extra):
        spacers.append(torch.empty(rng.randint(1, 64) << 20 | rng.randint(1, 255) << 9, dtype=torch.uint8,
                                   device=device_tensors[0].device))
        sets.append(tuple(a.clone() if isinstance(a, torch.Tensor) and a.is_cuda else a for a in inputs))
    del spacers
    return sets


def energy_per_call(backend: TimingBackend, fn: Callable[..., Any], args: Sequence[Any], telemetry: Any,
                    min_s: float = 0.25) -> float | None:
    """Energy per call in mJ from the NVML energy counter over back-to-back calls (no flush, one sync at the end)."""
    if telemetry is None or telemetry.energy_mj() is None:
        return None
    backend.sync()
    e0, t0, calls = telemetry.energy_mj(), time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - t0 < min_s:
        fn(*args)
        calls += 1
        if calls % 16 == 0:
            backend.sync()
    backend.sync()
    e1 = telemetry.energy_mj()
    return None if e1 is None or e1 <= e0 else (e1 - e0) / calls


def measure_ceilings(backend: TimingBackend) -> dict[str, Any] | None:
    """The device's own ceilings, measured once per process: a large copy and large matrix products (cuBLAS; fp8
    through ``torch._scaled_mm`` with unit scales, on GPUs of compute capability 8.9 and later)."""
    if backend.device != "cuda":
        return None
    import torch

    def best_ms(fn: Callable[[], Any], reps: int) -> float:
        fn()
        backend.sync()
        return min(backend.time_call(lambda: fn(), ())[0] for _ in range(reps))

    nbytes = 1 << 30
    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    copy_gbps = 2 * nbytes / (best_ms(lambda: dst.copy_(src), 10) / 1e3) / 1e9
    del src, dst
    tflops = {}
    for label, dtype, n in (("bf16", torch.bfloat16, 8192), ("fp32", torch.float32, 4096)):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        tflops[label] = 2 * n**3 / (best_ms(lambda: a @ b, 10) / 1e3) / 1e12
        del a, b
    if torch.cuda.get_device_capability() >= (8, 9):
        n, one = 8192, torch.ones((), device="cuda")
        a = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn)
        b = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn).t()
        gemm = lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)  # noqa: E731
        tflops["fp8"] = 2 * n**3 / (best_ms(gemm, 10) / 1e3) / 1e12
        del a, b
    torch.cuda.empty_cache()
    return {"copy_gbps": copy_gbps, "matmul_tflops": tflops}
