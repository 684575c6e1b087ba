"""The clocks that ``measure`` times calls with: CUDA events on a GPU, the host clock without one.

A timed call on the GPU runs behind a dispatch hold: the device is kept busy by a spin kernel while the host
records the start event and dispatches the variant, so the events time the device's work from its first kernel
rather than the host's Python and launch path in front of it. The hold adapts per arm (``DispatchHold``): on a
VM the host's dispatch of one kernel took 15-25 us most of the time but 60-100 us for seconds at a stretch, and
every microsecond past the hold lands inside the events (a 178 us copy kernel read 192 us; both arms of a pair
gain the same absolute time, so the speedup moves too). A call whose dispatch outlasted its hold raises that
arm's hold for the calls after it, up to ``MAX_HOLD_US``. Dispatch longer than ``SHORT_DISPATCH_US``, or a call
that returns only after its device work finished, is the arm's own host work (a Python loop of launches, a host
pipeline that synchronizes) and is never hidden beyond the base hold: cases whose lesson is that host work
declare ``host_dispatch="timed"`` and run with no hold at all.

Both clocks are ``TimingBackend``s, the interface the plugin times with; a ``pytest_aiperf_backend`` hook may return
any object that provides it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

HOLD_US = 50.0
MAX_HOLD_US = 400.0
SHORT_DISPATCH_US = 200.0


@runtime_checkable
class TimingBackend(Protocol):
    """What the plugin reads of a timing backend. ``time_call`` returns (device ms, synchronized host wall ms) of
    one call; ``dispatch_note`` what the backend did about ``fn``'s host dispatch, or None. A backend returned by
    ``pytest_aiperf_backend`` may leave ``dispatch_note`` out: the plugin reads it only through ``dispatch_notes``,
    which takes a missing one as None. The optional ``hardware`` (expectations key) and ``launch_latency_us()``
    (``host.pin_host``) are read with defaults too."""

    name: str
    device: str
    l2_bytes: int

    def flush(self) -> None: ...

    def sync(self) -> None: ...

    def time_call(self, fn: Callable[..., Any], args: Sequence[Any],
                  hide_dispatch: bool = True) -> tuple[float, float]: ...

    def peak_bytes(self, fn: Callable[..., Any], args: Sequence[Any], reserved: bool = False) -> int | None: ...

    def dispatch_note(self, fn: Callable[..., Any]) -> dict[str, float] | None: ...


def dispatch_notes(backend: Any, arms: Mapping[str, Callable[..., Any]]) -> dict[str, dict[str, float]]:
    """The dispatch note of each arm that the backend gives one for: none from a backend without ``dispatch_note``
    or whose note is None (the host clock, which holds nothing)."""
    note = getattr(backend, "dispatch_note", None)
    notes = {arm: note(fn) for arm, fn in arms.items()} if note is not None else {}
    return {arm: value for arm, value in notes.items() if value is not None}


class DispatchHold:
    """How long to hold the device before each arm's call, learned from the arm's own dispatch times."""

    def __init__(self, base_us: float = HOLD_US, max_us: float = MAX_HOLD_US,
                 short_us: float = SHORT_DISPATCH_US) -> None:
        if not 0 < base_us <= max_us:
            raise ValueError(f"need 0 < base_us <= max_us, got base_us={base_us}, max_us={max_us}")
        self.base_us, self.max_us, self.short_us = base_us, max_us, short_us
        self._holds: dict[Any, float] = {}
        self._late: dict[Any, int] = {}
        self._calls: dict[Any, int] = {}

    def hold_us(self, fn: Callable[..., Any]) -> float:
        return self._holds.get(fn, self.base_us)

    def late_calls(self, fn: Callable[..., Any]) -> int:
        """Calls of ``fn`` whose dispatch outlasted the hold they ran behind."""
        return self._late.get(fn, 0)

    def calls(self, fn: Callable[..., Any]) -> int:
        return self._calls.get(fn, 0)

    def observe(self, fn: Callable[..., Any], dispatch_us: float, pending: bool = True) -> bool:
        """Note one call's host dispatch time; True when it outlasted its hold (the device may have waited on
        the host inside the events). A short dispatch that did raises the arm's hold to twice that time, if the
        call returned with its work still ``pending`` on the device: an arm that waits for the device before
        returning does host work between device steps, which is its own time and is never hidden."""
        hold = self.hold_us(fn)
        self._calls[fn] = self._calls.get(fn, 0) + 1
        if dispatch_us <= hold:
            return False
        self._late[fn] = self._late.get(fn, 0) + 1
        if pending and dispatch_us <= self.short_us and hold < self.max_us:
            self._holds[fn] = min(self.max_us, 2 * dispatch_us)
        return True


class CudaEvents:
    """CUDA events on the current stream, an adaptive dispatch hold before each call, and a 2x L2 flush buffer."""

    name = "cuda-events"
    device = "cuda"

    def __init__(self, hold: DispatchHold | None = None) -> None:
        import torch

        self.torch = torch
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        self.l2_bytes = int(getattr(props, "L2_cache_size", 0) or 50 * 2**20)
        self.flush_buffer = torch.zeros(2 * self.l2_bytes // 4, dtype=torch.float32, device="cuda")
        self.hold = hold or DispatchHold()
        self.cycles_per_us = self._spin_cycles(1.0) / 1e3

    def _spin_cycles(self, ms: float) -> int:
        """Cycles of ``torch.cuda._sleep`` that keep the device busy for about ``ms``, calibrated here."""
        torch = self.torch
        probe = 1_000_000
        torch.cuda._sleep(probe)
        times = []
        for _ in range(5):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.cuda._sleep(probe)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return max(1, int(probe * ms / sorted(times)[2]))

    def flush(self) -> None:
        self.flush_buffer.sum()

    def sync(self) -> None:
        self.torch.cuda.synchronize()

    def time_call(self, fn: Callable[..., Any], args: Sequence[Any], hide_dispatch: bool = True) -> tuple[float, float]:
        torch = self.torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        held_us = self.hold.hold_us(fn) if hide_dispatch else 0.0
        if held_us:
            torch.cuda._sleep(max(1, int(held_us * self.cycles_per_us)))
        t0 = time.perf_counter()
        start.record()
        out = fn(*args)
        dispatched = time.perf_counter()
        pending = bool(held_us) and not torch.cuda.current_stream().query()
        end.record()
        torch.cuda.synchronize()
        if held_us:
            self.hold.observe(fn, (dispatched - t0) * 1e6, pending=pending)
        wall = max(0.0, (time.perf_counter() - t0) * 1e3 - held_us / 1e3)
        del out
        return start.elapsed_time(end), wall

    def dispatch_note(self, fn: Callable[..., Any]) -> dict[str, float]:
        """The hold ``fn`` now runs behind, and how many of its calls (of all so far) outlasted theirs."""
        return {"hold_us": self.hold.hold_us(fn), "late_calls": self.hold.late_calls(fn), "calls": self.hold.calls(fn)}

    def launch_latency_us(self, launches: int = 32, reps: int = 15) -> float:
        """Median host time per launch of a tiny kernel, each batch ended by a device sync."""
        from statistics import median

        torch = self.torch
        probe = torch.zeros(16, device="cuda")
        times = []
        for _ in range(reps + 2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(launches):
                probe.add_(1)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) / launches * 1e6)
        return median(times[2:])

    def peak_bytes(self, fn: Callable[..., Any], args: Sequence[Any], reserved: bool = False) -> int:
        """Peak device memory one call of ``fn`` adds: allocated bytes, or with ``reserved`` the bytes the caching
        allocator reserved (its cache emptied first, so what the call itself makes it reserve is counted)."""
        torch = self.torch
        torch.cuda.synchronize()
        if reserved:
            torch.cuda.empty_cache()
        before = torch.cuda.memory_reserved() if reserved else torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn(*args)
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_reserved() if reserved else torch.cuda.max_memory_allocated()) - before
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

    def time_call(self, fn: Callable[..., Any], args: Sequence[Any], hide_dispatch: bool = True) -> tuple[float, float]:
        t0 = time.perf_counter()
        out = fn(*args)
        elapsed = (time.perf_counter() - t0) * 1e3
        del out
        return elapsed, elapsed

    def peak_bytes(self, fn: Callable[..., Any], args: Sequence[Any], reserved: bool = False) -> int | None:
        return None

    def dispatch_note(self, fn: Callable[..., Any]) -> dict[str, float] | None:
        return None
