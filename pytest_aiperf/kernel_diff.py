"""Which kernels changed between a case's profile now and the profile recorded with its expectation.

A profile is ``{"baseline": {kernel: us}, "optimized": {kernel: us}}``: the device time of each CUDA kernel in one
call of each arm (on the CPU, each operator's self CPU time), summed over the kernel's launches in that call. Pure:
profiles in, sentences out, so a regression's evidence is tested without a profiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_aiperf.expectations_schema import valid_profile as valid
from pytest_aiperf.report import format_ms

ARMS = ("baseline", "optimized")
TOP = 3  # the changes a message names
MIN_SHARE = 0.10  # a change counts from this share of its arm's total time in one call, then or now
MIN_US = 1.0  # and from this many microseconds
NAME_CHARS = 96  # a templated CUDA kernel name is cut to this many characters in a message


@dataclass(frozen=True)
class KernelChange:
    """One kernel of one arm: its time per call in the recorded profile and now (None: it did not run then/now)."""

    arm: str
    kernel: str
    then_us: float | None
    now_us: float | None

    @property
    def delta_us(self) -> float:
        return (self.now_us or 0.0) - (self.then_us or 0.0)

    def sentence(self) -> str:
        """``the optimized arm's `aten::mul` went from 41 us to 63 us`` (or is new, or is gone)."""
        name = f"the {self.arm} arm's `{short(self.kernel)}`"
        if self.then_us is None:
            return f"{name} is new ({_us(self.now_us)})"
        if self.now_us is None:
            return f"{name} is gone (was {_us(self.then_us)})"
        return f"{name} went from {_us(self.then_us)} to {_us(self.now_us)}"


def short(kernel: str) -> str:
    return kernel if len(kernel) <= NAME_CHARS else kernel[:NAME_CHARS - 3] + "..."


def _us(value: float | None) -> str:
    return format_ms((value or 0.0) / 1e3)


def changes(recorded: dict[str, dict[str, float]], now: dict[str, dict[str, float]], *,
            top: int = TOP) -> list[KernelChange]:
    """The ``top`` largest changes of kernel time, both arms together, largest first (ties by arm and name). A change
    counts where it is at least ``MIN_US`` and at least ``MIN_SHARE`` of its arm's total time per call, then or now,
    so that the launch jitter of tiny kernels is not named as evidence."""
    found = []
    for arm in ARMS:
        then_arm, now_arm = recorded.get(arm) or {}, now.get(arm) or {}
        total = max(sum(then_arm.values()), sum(now_arm.values()))
        for kernel in set(then_arm) | set(now_arm):
            change = KernelChange(arm, kernel, then_arm.get(kernel), now_arm.get(kernel))
            if abs(change.delta_us) >= max(MIN_US, MIN_SHARE * total):
                found.append(change)
    found.sort(key=lambda c: (-abs(c.delta_us), c.arm, c.kernel))
    return found[:top]


def top_kernels(kernels: dict[str, float], count: int = TOP) -> list[tuple[str, float]]:
    """The ``count`` kernels that took the most time, most first."""
    return sorted(kernels.items(), key=lambda item: (-item[1], item[0]))[:count]


def totals(profile: dict[str, dict[str, float]]) -> dict[str, float]:
    return {arm: sum((profile.get(arm) or {}).values()) for arm in ARMS}


def evidence(recorded: Any, now: dict[str, dict[str, float]]) -> str:
    """What a failure message adds about the kernels: the largest changes since the recorded profile, or, without a
    recorded profile, the kernels that take the most time now in each arm."""
    now_totals = totals(now)
    if not valid(recorded):
        tops = "; ".join(f"the {arm} arm's top kernels: " + ", ".join(f"`{short(k)}` {_us(us)}"
                                                                      for k, us in top_kernels(now.get(arm) or {}))
                         for arm in ARMS if now.get(arm))
        return ("no per-kernel profile was recorded with this expectation (record one with --update-expectations "
                f"--aiperf-profile=regressed); now {tops or 'no kernel ran'}")
    then_totals = totals(recorded)
    arms = ", ".join(f"{arm} {_us(then_totals[arm])} -> {_us(now_totals[arm])}" for arm in ARMS)
    found = changes(recorded, now)
    if not found:
        return f"no kernel's time changed beyond {MIN_SHARE:.0%} of its arm since the recorded profile ({arms})"
    return f"since the recorded profile ({arms} of kernel time per call), " + "; ".join(c.sentence() for c in found)
