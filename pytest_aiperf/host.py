"""The host side of a measurement: which CPUs the measuring thread runs on, chosen by kernel-launch latency."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class HostPin:
    """The CPUs the measuring thread was kept on, and the launch latency measured on every allowed CPU."""

    cpus: tuple[int, ...]
    launch_us: dict[int, float]
    threads: tuple[int, int] | None = None

    @property
    def best_us(self) -> float:
        """The launch latency of the fastest pinned CPU: how fast this host dispatches (recorded in provenance)."""
        return min(self.launch_us[c] for c in self.cpus)

    def describe(self) -> str:
        values = self.launch_us.values()
        best = self.best_us
        threads = f"; torch threads {self.threads[0]} -> {self.threads[1]}" if self.threads else ""
        return (f"host CPUs {','.join(map(str, self.cpus))} of {len(self.launch_us)} (launch {best:.1f} us; "
                f"all CPUs {min(values):.1f}-{max(values):.1f} us{threads})")


def pin_host(backend: Any, share: Callable[[list[int]], list[int]] = sorted) -> HostPin | None:
    """Keep the measuring thread on the faster half of the allowed CPUs by kernel-launch latency, and torch's
    intra-op pool no larger than that set. The half, not a latency threshold: a threshold let the probe's noise
    pick 2 CPUs in one process and 11 in the next (seen on an H100 VM), and host-side work then ran with that many
    threads.

    ``share`` narrows the allowed CPUs first (an xdist worker's part of the host, ``workers.cpu_share``), so
    workers measuring side by side never run their host threads on the same CPUs. Threads and processes started
    later inherit the set. Nothing is changed where the backend has no launch latency to measure or the platform
    has no affinity call, and no probing is done where the share has one CPU."""
    probe = getattr(backend, "launch_latency_us", None)
    if probe is None or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(share(sorted(os.sched_getaffinity(0))))
    os.sched_setaffinity(0, allowed)
    if len(allowed) < 2:
        return None
    latency: dict[int, float] = {}
    try:
        for cpu in allowed:
            os.sched_setaffinity(0, {cpu})
            latency[cpu] = probe()
    finally:
        os.sched_setaffinity(0, allowed)
    fast = tuple(sorted(sorted(allowed, key=lambda cpu: (latency[cpu], cpu))[:max(1, len(allowed) // 2)]))
    os.sched_setaffinity(0, fast)
    return HostPin(fast, latency, _fit_threads(len(fast)))


def _fit_threads(cpus: int) -> tuple[int, int] | None:
    """More torch intra-op threads than CPUs makes spinning OpenMP threads wait on each other: host-side work in
    a case would be timed at a fraction of its speed. The pool is shrunk to the pinned CPUs (never grown)."""
    import torch

    before = torch.get_num_threads()
    if before <= cpus:
        return None
    torch.set_num_threads(cpus)
    return before, cpus
