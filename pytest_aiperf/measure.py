"""Measure a pair: the only module that times anything.

Method (one place, reported with every result):

- **Per-call device time.** Before each timed call the device is synchronized (so a launch-bound variant pays its
  launches, none hidden behind earlier queued work), a start event is recorded on the current stream, the variant
  runs, an end event is recorded, and the device is synchronized again. Synchronized host wall time of the same
  call is kept beside the event time: work left on an unjoined side stream shows as events far shorter than wall.
- **Cold or warm cache.** Cold cases zero a buffer of twice the device's L2 before each call (outside the events);
  warm cases declare that they live in cache and skip it.
- **Warm-up** alternates the arms until each ran at least three times, compilation is done, and the medians of
  consecutive windows agree within 5% (clocks steady), within a capped share of the budget.
- **Interleaving.** Rounds time both arms on the identical inputs, alternating which goes first (A B, B A, ...).
- **Stopping.** After a minimum number of rounds, sampling stops as soon as the speedup's bootstrap interval lies
  wholly on one side of the gate, or when the budget runs out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pytest_aiperf.stats import speedup_ci
from pytest_aiperf.verdict import Gate, is_decisive

MIN_ROUNDS = 20
MAX_ROUNDS = 20000
WARMUP_SHARE = 0.25


class CudaEvents:
    """CUDA events on the current stream, with a 2x L2 flush buffer."""

    name = "cuda-events"
    device = "cuda"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        self.l2_bytes = int(getattr(props, "L2_cache_size", 0) or 50 * 2**20)
        self.flush_buffer = torch.empty(2 * self.l2_bytes, dtype=torch.uint8, device="cuda")

    def flush(self) -> None:
        self.flush_buffer.zero_()

    def sync(self) -> None:
        self.torch.cuda.synchronize()

    def time_call(self, fn: Callable[..., Any], args: Sequence[Any]) -> tuple[float, float]:
        torch = self.torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        start.record()
        out = fn(*args)
        end.record()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) * 1e3
        del out
        return start.elapsed_time(end), wall

    def peak_bytes(self, fn: Callable[..., Any], args: Sequence[Any]) -> int:
        torch = self.torch
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn(*args)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        del out
        return int(peak)


class CpuClock:
    """Host clock around each call: the timing backend for machines without a GPU and for the plugin's own tests."""

    name = "cpu-clock"
    device = "cpu"
    l2_bytes = 0

    def flush(self) -> None:
        return None

    def sync(self) -> None:
        return None

    def time_call(self, fn: Callable[..., Any], args: Sequence[Any]) -> tuple[float, float]:
        t0 = time.perf_counter()
        out = fn(*args)
        elapsed = (time.perf_counter() - t0) * 1e3
        del out
        return elapsed, elapsed

    def peak_bytes(self, fn: Callable[..., Any], args: Sequence[Any]) -> int | None:
        return None


@dataclass
class Samples:
    """Paired samples of one measurement: ``base_ms[i]`` and ``opt_ms[i]`` come from round i."""

    base_ms: list[float] = field(default_factory=list)
    opt_ms: list[float] = field(default_factory=list)
    base_wall_ms: list[float] = field(default_factory=list)
    opt_wall_ms: list[float] = field(default_factory=list)
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    warmup_calls: int = 0
    seconds: float = 0.0


def _timed(backend: Any, fn: Callable[..., Any], args: Sequence[Any], cold: bool) -> tuple[float, float]:
    if cold:
        backend.flush()
    return backend.time_call(fn, args)


def warm_up(backend: Any, base: Callable[..., Any], opt: Callable[..., Any], args: Sequence[Any], *, cold: bool,
            max_s: float, min_calls: int = 3, window: int = 5) -> int:
    """Alternate the arms until compiled and steady; return the number of calls made per arm."""
    times: dict[str, list[float]] = {"base": [], "opt": []}
    start = time.perf_counter()
    while True:
        for arm, fn in (("base", base), ("opt", opt)):
            times[arm].append(_timed(backend, fn, args, cold)[0])
        calls = len(times["base"])
        if calls >= min_calls and time.perf_counter() - start >= max_s:
            return calls
        if calls >= max(min_calls, 2 * window) and all(_steady(t[-2 * window:], window) for t in times.values()):
            return calls


def _steady(times: list[float], window: int) -> bool:
    from statistics import median

    before, after = median(times[:window]), median(times[window:])
    return abs(after - before) <= 0.05 * before


def sample_pair(backend: Any, base: Callable[..., Any], opt: Callable[..., Any], args: Sequence[Any], *,
                cold: bool, budget_s: float, gate: Gate | None, telemetry: Any = None,
                min_rounds: int = MIN_ROUNDS) -> Samples:
    """Warm up, then time interleaved rounds until the gate is decided or the budget is spent."""
    out = Samples()
    begin = time.perf_counter()
    if telemetry is not None:
        out.telemetry.append(telemetry.sample())
    out.warmup_calls = warm_up(backend, base, opt, args, cold=cold, max_s=WARMUP_SHARE * budget_s)
    deadline = begin + budget_s
    next_check, next_sample = min_rounds, time.perf_counter() + 0.5
    for i in range(MAX_ROUNDS):
        order = ((base, out.base_ms, out.base_wall_ms), (opt, out.opt_ms, out.opt_wall_ms))
        for fn, events, walls in (order if i % 2 == 0 else order[::-1]):
            event_ms, wall_ms = _timed(backend, fn, args, cold)
            events.append(event_ms)
            walls.append(wall_ms)
        rounds = i + 1
        now = time.perf_counter()
        if telemetry is not None and now >= next_sample:
            out.telemetry.append(telemetry.sample())
            next_sample = now + 0.5
        if now >= deadline and rounds >= 3:
            break
        if gate is not None and rounds >= next_check:
            next_check = int(rounds * 1.25) + 1
            if is_decisive(speedup_ci(out.base_ms, out.opt_ms, resamples=1000), gate):
                break
    if telemetry is not None:
        out.telemetry.append(telemetry.sample())
    out.seconds = time.perf_counter() - begin
    return out


def energy_per_call(backend: Any, fn: Callable[..., Any], args: Sequence[Any], telemetry: Any,
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


def measure_ceilings(backend: Any) -> dict[str, Any] | None:
    """The device's own ceilings, measured once per process: a large copy and large matrix products."""
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
    torch.cuda.empty_cache()
    return {"copy_gbps": copy_gbps, "matmul_tflops": tflops}
