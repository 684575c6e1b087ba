"""The scaling of distributed cases measured at two or more world sizes in one run: a table after the summary.

Pure, like ``report``: records in, a string out.
"""

from __future__ import annotations

from typing import Any

from pytest_aiperf.record import achieved, communication
from pytest_aiperf.report import NONE, arm_cell, format_rate, format_ratio, format_speedup, table

SCALING_TITLE = "scaling (distributed cases; slowest rank per round)"
SCALING_HEADERS = ("case", "ranks", "baseline", "optimized", "speedup", "bus GB/s (% busbw)", "optimized vs {n}",
                   "baseline vs {n}", "comm GB/s (% busbw)", "comm hidden")


def scaling_table(records: list[dict[str, Any]]) -> str:
    """How each distributed case measured at two or more world sizes in this run scales: one row per world size,
    grouped by the case id without its ``-<n>gpus`` suffix and sorted by ranks. Beside the arms and the speedup, the
    optimized arm's bus GB/s (work bytes per rank over its time) and their share of that world's all-reduce bus
    bandwidth, and each arm's median relative to its median at the fewest ranks (``1.42x``: 42% slower). For an
    overlap pair timed with its ``compute_only``, what its communication achieves (``record.communication``): the
    baseline's communication time as bus GB/s and % of the all-reduce's, and the share of it the optimized arm
    hides; ``-`` for other cases (a pure-communication pair's bus GB/s are the optimized arm's). Empty string when no
    case has two world sizes."""
    groups: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for record in records:
        ranks = (record.get("provenance") or {}).get("ranks")
        case = record["key"].removesuffix(f"-{ranks}gpus")
        if ranks and case != record["key"]:
            groups.setdefault((record.get("chapter") or "", case), {})[int(ranks)] = record
    scaled = {group: sorted(worlds.items()) for group, worlds in sorted(groups.items()) if len(worlds) >= 2}
    if not scaled:
        return ""
    fewest = {worlds[0][0] for worlds in scaled.values()}
    against = f"{min(fewest)} ranks" if len(fewest) == 1 else "fewest ranks"
    rows = []
    for (_, case), worlds in scaled.items():
        first = worlds[0][1]
        for ranks, record in worlds:
            comm = communication(record)
            rows.append((case, str(ranks), arm_cell(record, "baseline"), arm_cell(record, "optimized"),
                         format_speedup(record), _bus(achieved(record, "optimized")),
                         _relative(record, first, "optimized"), _relative(record, first, "baseline"), _bus(comm),
                         NONE if comm["hidden"] is None else f"{100 * comm['hidden']:.0f}%"))
    return table(rows, tuple(header.format(n=against) for header in SCALING_HEADERS))


def scaling_block(records: list[dict[str, Any]]) -> str:
    """The scaling table under its title line; empty string when it has no rows."""
    table = scaling_table(records)
    return f"{SCALING_TITLE}\n{table}" if table else ""


def _bus(rates: dict[str, float | None]) -> str:
    """``312 (78%)``: GB/s and their share of the all-reduce bus bandwidth; ``312 (-)`` without that ceiling."""
    if not rates["gbps"]:
        return NONE
    share = NONE if rates["pct_bw"] is None else f"{rates['pct_bw']:.0f}%"
    return f"{format_rate(rates['gbps'])} ({share})"


def _relative(record: dict[str, Any], first: dict[str, Any], arm_name: str) -> str:
    """An arm's median over its median in ``first`` (the same case at the fewest ranks): ``1.42x``."""
    now, then = (record.get(arm_name) or {}).get("median_ms"), (first.get(arm_name) or {}).get("median_ms")
    return f"{format_ratio(now / then)}x" if now and then else NONE
