"""What the terminal shows: the summary table of measured cases, the scaling of distributed cases, the failures, the
expectation updates, the stale entries and the report header line.

Pure: every function turns records (see ``record.py``) or change objects into a string and touches nothing else,
so the whole report can be unit-tested on hand-made records without a GPU.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Protocol

from tabulate import tabulate

from pytest_aiperf.expectations_rules import percent
from pytest_aiperf.record import achieved

TABLE_FORMAT = "simple"
SUMMARY_HEADERS = ("case", "baseline", "optimized", "speedup", "expected", "verdict", "achieved", "% ceil",
                   "energy/call")
UPDATE_HEADERS = ("hardware", "chapter", "case", "status", "old", "new", "delta", "margin")
FAILING = ("REGRESSED", "INCONCLUSIVE")
NONE = "-"


class ChangeLike(Protocol):
    """What ``update_table`` reads from one expectation change (``pytest_aiperf.expectations.Change``)."""

    hardware: str
    chapter: str
    key: str
    status: str
    old: float | None
    new: float | None
    old_margin: float | None
    new_margin: float | None
    detail: str


def format_ms(ms: float | None) -> str:
    """A duration given in ms, with the unit that keeps it short: ``812 us``, ``1.23 ms``, ``2.1 s``."""
    if ms is None or not math.isfinite(ms):
        return NONE
    seconds = float(f"{ms / 1e3:.3g}")
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if seconds >= scale:
            return f"{_sig3(seconds / scale)} {unit}"
    return f"{_sig3(seconds / 1e-9)} ns"


def format_bytes(count: float | None) -> str:
    """A byte count in binary units: ``512 B``, ``1.5 KiB``, ``3 GiB``."""
    if count is None:
        return NONE
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{_sig3(value)} {unit}"
        value /= 1024
    raise AssertionError("unreachable: the loop returns at GiB")


def format_ratio(value: float) -> str:
    """A speedup or ratio: two decimals (``3.21``), none from 100 up (``154``)."""
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def format_speedup(record: dict[str, Any]) -> str:
    """``3.21x [3.18, 3.25]``: the ratio of medians and its confidence interval."""
    speedup = record.get("speedup")
    if speedup is None:
        return NONE
    ci = record.get("ci")
    if not ci or ci[0] is None or ci[1] is None:
        return f"{format_ratio(speedup)}x"
    return f"{format_ratio(speedup)}x [{format_ratio(ci[0])}, {format_ratio(ci[1])}]"


def format_expected(record: dict[str, Any]) -> str:
    """``3.10x +-4%`` when gated by a recorded expectation, ``floor 1.20x`` when gated by ``min_speedup``."""
    gate = record.get("gate") or {}
    expected = record.get("expected")
    if gate.get("source") == "expectation" and expected and expected.get("speedup") is not None:
        margin = expected.get("noise_margin")
        spread = "" if margin is None else f" +-{_sig3(100 * margin)}%"
        return f"{format_ratio(expected['speedup'])}x{spread}"
    if gate.get("source") == "floor":
        floor = gate.get("low", record.get("min_speedup"))
        return NONE if floor is None else f"floor {format_ratio(floor)}x"
    return NONE


def format_verdict(record: dict[str, Any]) -> str:
    """The verdict, with ``*`` when an inconclusive first measurement was repeated with a larger budget."""
    verdict = record.get("verdict") or NONE
    return f"{verdict}*" if record.get("remeasured") else verdict


def format_achieved(record: dict[str, Any]) -> str:
    """What the optimized arm achieved: ``2710 GB/s, 612 TFLOP/s``, or ``1.2e6 samples/s`` for the throughput goal."""
    rates = achieved(record, "optimized")
    work = record.get("work") or {}
    items = f"{format_rate(rates['items_per_s'])} {work.get('item_name') or 'items'}/s" if rates["items_per_s"] else None
    if record.get("goal") == "throughput" and items:
        return items
    parts = [f"{format_rate(rates['gbps'])} GB/s" if rates["gbps"] else None,
             f"{format_rate(rates['tflops'])} TFLOP/s" if rates["tflops"] else None]
    shown = [part for part in parts if part]
    return ", ".join(shown) if shown else (items or NONE)


def format_ceiling(record: dict[str, Any]) -> str:
    """Percent of the measured ceiling; with both a bandwidth and a flops share, the larger one (the binding roof)."""
    rates = achieved(record, "optimized")
    shares = [share for share in (rates["pct_bw"], rates["pct_flops"]) if share is not None]
    return f"{max(shares):.0f}%" if shares else NONE


def format_energy(record: dict[str, Any]) -> str:
    """Energy per call, baseline -> optimized: ``310 -> 98 mJ``; ``-`` unless both arms were measured."""
    before = (record.get("baseline") or {}).get("energy_mj")
    after = (record.get("optimized") or {}).get("energy_mj")
    if before is None or after is None:
        return NONE
    return f"{format_rate(before)} -> {format_rate(after)} mJ"


def arm_cell(record: dict[str, Any], arm_name: str) -> str:
    """An arm's median time, or for the memory goal its peak bytes (what the memory ratio divides)."""
    arm = record.get(arm_name) or {}
    if record.get("goal") == "memory" and arm.get("peak_bytes") is not None:
        return format_bytes(arm["peak_bytes"])
    return format_ms(arm.get("median_ms"))


def summary_table(records: list[dict[str, Any]]) -> str:
    """One row per measured case, sorted by (chapter, key); empty string when nothing was measured."""
    if not records:
        return ""
    rows = [
        (record["key"], arm_cell(record, "baseline"), arm_cell(record, "optimized"), format_speedup(record),
         format_expected(record), format_verdict(record), format_achieved(record), format_ceiling(record),
         format_energy(record))
        for record in sorted(records, key=lambda r: (r.get("chapter") or "", r["key"]))
    ]
    return table(rows, SUMMARY_HEADERS)


def update_table(changes: Iterable[ChangeLike]) -> str:
    """The expectation entries an update touched, with old and new speedups, the relative change and the noise
    margins (``+-16.5% -> +-221%``), then one line per detail (why a case was refused, repaired or not written)."""
    ordered = sorted(changes, key=lambda c: (c.hardware, c.chapter, c.key))
    if not ordered:
        return ""
    rows = [(c.hardware, c.chapter, c.key, c.status, _speedup_or_none(c.old), _speedup_or_none(c.new),
             _delta(c.old, c.new), _margins(c.old_margin, c.new_margin)) for c in ordered]
    details: dict[tuple[str, str, str, str], list[str]] = {}
    for c in ordered:
        if c.detail:
            details.setdefault((c.status, c.hardware, c.chapter, c.detail), []).append(c.key)
    lines = [f"{status} {hardware}/{chapter} {', '.join(keys)}: {detail}"
             for (status, hardware, chapter, detail), keys in details.items()]
    return "\n".join([table(rows, UPDATE_HEADERS), *lines])


def stale_block(stale: list[tuple[Path, str]], root_label: str | Path) -> str:
    """Expectation entries whose case no longer exists, one ``file: key`` line each, the file relative to
    ``root_label`` (the rootdir) where it lies inside it, else as given; empty string when none."""
    if not stale:
        return ""
    entries = sorted((Path(path), key) for path, key in stale)
    lines = [f"{(path.relative_to(root_label) if path.is_relative_to(root_label) else path).as_posix()}: {key}"
             for path, key in entries]
    return "\n".join(["expectation entries whose case no longer exists (delete them from the file):", *lines])


def header_line(hardware: str, backend: str, expectations_dir: str, known: bool) -> str:
    """pytest's report header: which hardware key and timing backend gate this run, and where expectations live.

    ``expectations_dir`` may be the root (``expectations``) or the hardware's folder (``expectations/h100``).
    """
    folder = PurePosixPath(expectations_dir.replace("\\", "/"))
    if folder.name != hardware:
        folder = folder / hardware
    line = f"aiperf: hardware {hardware} (timing: {backend}), expectations: {folder}"
    if not known:
        line += "; unknown GPU: expectations keyed by its name slug; override with --aiperf-hardware"
    return line


def order_line(known: int, cached: bool) -> str:
    """pytest's report header under xdist: whether tests go out longest first, and from how many durations."""
    if known:
        return f"aiperf: xdist hands tests out longest first, by the durations of {known} tests in the last run"
    why = "no durations from a last run yet" if cached else "pytest's cache is off (-p no:cacheprovider)"
    return f"aiperf: xdist hands tests out as collected: {why}"


def table(rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> str:
    return tabulate(rows, headers=headers, tablefmt=TABLE_FORMAT, disable_numparse=True)


def _sig3(value: float) -> str:
    """Three significant digits without exponent up to 999 999: ``812``, ``1.23``, ``2.1``, ``1234``."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def format_rate(value: float) -> str:
    """A rate or energy: integer from 100 up, ``1.2e6`` from a million up, else three significant digits."""
    if abs(value) >= 1e6:
        exponent = math.floor(math.log10(abs(value)))
        mantissa = value / 10**exponent
        if abs(round(mantissa, 1)) >= 10:
            mantissa, exponent = mantissa / 10, exponent + 1
        return f"{mantissa:.1f}e{exponent}"
    return _sig3(value)


def _speedup_or_none(value: float | None) -> str:
    return NONE if value is None else f"{format_ratio(value)}x"


def _margins(old: float | None, new: float | None) -> str:
    """``+-16.5% -> +-221%``, or the one margin that is known."""
    return " -> ".join(percent(m) for m in (old, new) if m is not None) or NONE


def _delta(old: float | None, new: float | None) -> str:
    if old is None or new is None or old == 0:
        return NONE
    return f"{100 * (new / old - 1):+.1f}%"
