"""Judge a measured speedup against its gate: PASS, REGRESSED, IMPROVED or INCONCLUSIVE.

The gate is the recorded expectation's band for this hardware, or the case's hardware-independent
``min_speedup`` floor where nothing is recorded. A verdict is decided by the whole confidence interval,
never by the point estimate alone, so noise reads as INCONCLUSIVE rather than as a failure. Pure Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Sequence

from pytest_aiperf.stats import SpeedupEstimate, format_ms


class AiperfWarning(UserWarning):
    """Base of the plugin's warnings: a stale expectation, an inconclusive measurement."""


class ImprovedBeyondExpectation(AiperfWarning):
    """The speedup beat the recorded band: the expectation is stale and should be re-recorded."""


class InconclusiveMeasurement(AiperfWarning):
    """The measurement could not decide against the gate (noise, or a throttled GPU)."""


class Outcome(str, Enum):
    PASS = "PASS"
    REGRESSED = "REGRESSED"
    IMPROVED = "IMPROVED"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class Expected:
    """A recorded expectation: the speedup, its relative noise margin, and the arm medians behind it."""

    speedup: float
    noise_margin: float
    baseline_ms: float | None = None
    optimized_ms: float | None = None
    launch_us: tuple[float, float] | None = None  # the recording hosts' kernel-launch latency, lowest and highest
    workload: dict[str, float] | None = None  # the workload statistics the speedup was recorded at
    profile: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # recorded time per kernel

    def __post_init__(self) -> None:
        if not self.speedup > 0:
            raise ValueError(f"expected speedup must be positive, got {self.speedup}")
        if not (0 <= self.noise_margin < float("inf")):
            raise ValueError(f"expected noise_margin must be a finite number >= 0, got {self.noise_margin}")

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> Expected:
        """Read an expectations-file entry: ``{"speedup", "noise_margin", "baseline": {"median_ms"}, ...}``."""
        missing = [key for key in ("speedup", "noise_margin") if key not in entry]
        if missing:
            raise ValueError(f"expectation entry lacks {', '.join(missing)}: {entry!r}")

        def arm_median(name: str) -> float | None:
            value = (entry.get(name) or {}).get("median_ms")
            return None if value is None else float(value)

        return cls(
            speedup=float(entry["speedup"]),
            noise_margin=float(entry["noise_margin"]),
            baseline_ms=arm_median("baseline"),
            optimized_ms=arm_median("optimized"),
            launch_us=_recorded_launch(entry),
            workload=entry.get("workload") or None,
            profile=entry.get("profile") or None,
        )

    def to_json(self) -> dict[str, Any]:
        """The record's ``expected`` value."""
        return {"speedup": self.speedup, "noise_margin": self.noise_margin,
                "baseline_ms": self.baseline_ms, "optimized_ms": self.optimized_ms,
                "launch_us": None if self.launch_us is None else list(self.launch_us), "workload": self.workload}


_LAUNCH_NOTE = re.compile(r"\(launch ([0-9.]+) us")
HOST_TOLERANCE = 0.2


def _recorded_launch(entry: dict[str, Any]) -> tuple[float, float] | None:
    """The lowest and highest launch latency of the hosts an entry was recorded on: each recording's
    ``launch_us``, or for recordings made before that field existed, the latency its ``host_cpus`` line states."""
    values = []
    for rec in entry.get("recordings") or [entry.get("provenance") or {}]:
        value = rec.get("launch_us")
        if value is None:
            found = _LAUNCH_NOTE.search(str(rec.get("host_cpus") or ""))
            value = float(found.group(1)) if found else None
        if isinstance(value, (int, float)) and value > 0:
            values.append(float(value))
    return (min(values), max(values)) if values else None


def workload_shift(recorded: dict[str, float] | None, current: dict[str, float] | None,
                   tolerance: float) -> str | None:
    """Why this run's workload cannot be compared with the recording's: a statistic that decides the speedup
    (recorded with the expectation) differs by more than ``tolerance``, relative. None when comparable."""
    if not recorded or current is None:
        return None
    moved = [f"{name} {current.get(name)!r} (recorded {value:.4g})" for name, value in sorted(recorded.items())
             if not isinstance(current.get(name), (int, float))
             or abs(current[name] - value) > tolerance * max(abs(value), 1e-12)]
    return None if not moved else f"the workload changed: {', '.join(moved)}, beyond {_pct(tolerance)}"


def host_shift(recorded: tuple[float, float] | None, current: float | None,
               tolerance: float = HOST_TOLERANCE) -> str | None:
    """Why this host cannot be compared with the recording hosts, for a case whose time includes host work:
    its kernel-launch latency lies more than ``tolerance`` outside theirs. None when it is comparable."""
    if recorded is None or current is None:
        return None
    low, high = recorded
    span = f"{low:.1f} us" if low == high else f"{low:.1f}-{high:.1f} us"
    here = f"this host launches a kernel in {current:.1f} us"
    if current > high * (1 + tolerance):
        return f"{here}, {_pct(current / high - 1)} slower than the recording hosts' {span}"
    if current < low / (1 + tolerance):
        return f"{here}, {_pct(low / current - 1)} faster than the recording hosts' {span}"
    return None


@dataclass(frozen=True)
class Gate:
    """The accepted band: ``low`` always; ``high`` only for an expectation (None: no upper bound). ``floor`` is set
    where the case's ``min_speedup`` floor lies above the expectation's band edge and so became ``low``."""

    low: float
    high: float | None
    source: str  # "expectation" | "floor"
    floor: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "source": self.source, "floor": self.floor}


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str


def gate_for(expected: Expected | None, min_speedup: float, known_loss: str | None = None) -> Gate:
    """``[E/(1+m), E*(1+m)]`` from an expectation (symmetric in log space, so the low edge stays positive for any
    margin), else ``[min_speedup, inf)`` from the case's floor.

    The floor is the case's claim that the technique wins, so it holds under an expectation too: a band whose low
    edge lies below ``min_speedup`` is raised to it, and an entry that recorded a loss fails every run, unless the
    case declares ``known_loss`` (its reason for measuring below the floor); then the band is gated as recorded."""
    if not min_speedup > 0:
        raise ValueError(f"min_speedup must be positive, got {min_speedup}")
    if expected is None:
        return Gate(low=min_speedup, high=None, source="floor")
    low = expected.speedup / (1 + expected.noise_margin)
    high = expected.speedup * (1 + expected.noise_margin)
    if known_loss is None and low < min_speedup:
        return Gate(low=min_speedup, high=max(high, min_speedup), source="expectation", floor=min_speedup)
    return Gate(low=low, high=high, source="expectation")


def is_decisive(est: SpeedupEstimate, gate: Gate) -> bool:
    """The sampling stopping rule: the interval lies wholly on one side of the gate's low edge."""
    return est.lo >= gate.low or est.hi < gate.low


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


def _describe_gate(gate: Gate, expected: Expected | None, hardware: str, unit: str) -> str:
    if gate.source != "expectation" or gate.high is None:
        return f"the floor {gate.low:.2f}{unit}"
    recorded = "" if expected is None else f"recorded {expected.speedup:.2f}{unit} +-{_pct(expected.noise_margin)}"
    if gate.floor is not None:
        return (f"the min_speedup floor {gate.floor:.2f}{unit}, above the {hardware} band's low edge ({recorded}; "
                f"the case declares no known_loss, so the floor holds)")
    band = f"the {hardware} band {gate.low:.2f}{unit}..{gate.high:.2f}{unit}"
    return f"{band} ({recorded})" if recorded else band


def _floor_note(gate: Gate, hardware: str, unit: str, baseline_ms: float, optimized_ms: float) -> str:
    return (f"no expectation recorded for {hardware}; gated by min_speedup {gate.low:.2f}{unit} "
            f"(baseline {format_ms(baseline_ms)} ms, optimized {format_ms(optimized_ms)} ms)")


def _arm_change(label: str, current: float, recorded: float, margin: float) -> tuple[bool, str]:
    """Whether one arm moved beyond the margin, and the clause that says so."""
    change = current / recorded - 1
    detail = f"({format_ms(current)} ms vs recorded {format_ms(recorded)} ms, {100 * change:+.0f}%)"
    if abs(change) <= margin:
        return False, f"{label} is unchanged {detail}"
    return True, f"{label} got {'slower' if change > 0 else 'faster'} {detail}"


def blame(expected: Expected, baseline_ms: float, optimized_ms: float) -> str:
    """Which half of the ratio moved since the recording: each arm against its recorded median.

    A change counts when it exceeds the expectation's noise margin; arms first that moved, then the rest.
    """
    arms = [(name, current, recorded)
            for name, current, recorded in (("the optimized arm", optimized_ms, expected.optimized_ms),
                                            ("the baseline", baseline_ms, expected.baseline_ms))
            if recorded is not None]
    if not arms:
        return "the expectation records no arm times, so the half that moved cannot be named"
    changes = [_arm_change(name, current, recorded, expected.noise_margin) for name, current, recorded in arms]
    moved = [clause for did_move, clause in changes if did_move]
    still = [clause for did_move, clause in changes if not did_move]
    if not moved:
        return (f"neither arm moved beyond the +-{_pct(expected.noise_margin)} margin, the ratio did: "
                + "; ".join(still))
    return "; ".join([" and ".join(moved), *still])


def judge(est: SpeedupEstimate, gate: Gate, *, expected: Expected | None, baseline_ms: float,
          optimized_ms: float, throttle: Sequence[str] = (), host_change: str | None = None,
          hardware: str = "this hardware", unit: str = "x") -> Verdict:
    """Decide the outcome from the interval's position against the gate, with one actionable line.

    A fall below the gate is INCONCLUSIVE rather than REGRESSED when the GPU was throttled, or when the case's time
    includes host work and this host is not comparable with the recording hosts (``host_change``, from
    ``host_shift``): neither says anything about the code."""
    measured = f"speedup {est.speedup:.2f}{unit} [{est.lo:.2f}, {est.hi:.2f}]"
    target = _describe_gate(gate, expected, hardware, unit)
    if gate.source == "expectation":
        edge = f"the low edge {gate.low:.2f}{unit} of {target}"
        tail = ""
        detail = blame(expected, baseline_ms, optimized_ms) if expected else "the expectation records no arm times"
    else:
        edge = target
        tail = "; " + _floor_note(gate, hardware, unit, baseline_ms, optimized_ms)
        detail = tail[2:]

    if est.hi < gate.low:
        if throttle:
            return Verdict(Outcome.INCONCLUSIVE, (
                f"throttled: {', '.join(throttle)}; {measured} is below {target}, but a throttled GPU cannot "
                f"show a regression; rerun with the GPU idle and cool{tail}"))
        if host_change:
            return Verdict(Outcome.INCONCLUSIVE, (
                f"another host: {host_change}; {measured} is below {target}, but this case times host work, so a "
                f"different host cannot show a regression ({detail}); to gate on this host, record it with "
                f"--update-expectations=add"))
        return Verdict(Outcome.REGRESSED, f"{measured} is below {target}: {detail}")

    if est.lo >= gate.low:
        if expected is not None and gate.high is not None and est.lo > gate.high:
            return Verdict(Outcome.IMPROVED, (
                f"{measured} is above {target}: {detail}; "
                "if the gain is intended, record it with --update-expectations"))
        return Verdict(Outcome.PASS, f"{measured} clears {edge}{tail}")

    return Verdict(Outcome.INCONCLUSIVE, (
        f"{measured} straddles {edge}: the interval straddles the gate; "
        f"noise - rerun with a larger budget or on a quieter GPU{tail}"))
