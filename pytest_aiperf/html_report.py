"""The HTML report (``--aiperf-html``): one self-contained page of a run's records, with no network access.

Pure: records (see ``record.py``), the perf tests that failed before a record existed, and each case's recordings
from its expectation entry in, one HTML document out. Every text that comes from a case (ids, reasons, tracebacks)
is escaped; the charts are inline SVG (``svg``); the style and the few lines of script are inline
(``html_assets``), and the page reads the same without the script (it only adds sorting and filtering).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from html import escape
from typing import Any, Sequence

from pytest_aiperf import html_assets, notes, svg
from pytest_aiperf.expectations_rules import percent
from pytest_aiperf.record import achieved, communication
from pytest_aiperf.report import (NONE, arm_cell, format_achieved, format_bytes, format_ceiling, format_energy,
                                  format_expected, format_ms, format_ratio, format_speedup,
                                  format_verdict)

RANK = {"FAILED": 0, "REGRESSED": 1, "INCONCLUSIVE": 2, "IMPROVED": 3, "PASS": 4}
MACHINE = (("GPU", "gpu"), ("SMs", "sm_count"), ("driver", "driver"), ("CUDA", "cuda"), ("torch", "torch"),
           ("triton", "triton"), ("Python", "python"), ("host CPU", "host_cpu_model"), ("host CPUs", "host_cpus"))
HEADERS = (("case", False), ("verdict", True), ("baseline", True), ("optimized", True), ("speedup", True),
           ("against the band", False), ("goal metric", False), ("energy/call", False), ("first call", True),
           ("recordings", False))
TRACEBACK_LINES = 40


@dataclass(frozen=True)
class Failed:
    """A perf test that failed before it produced a record (a correctness check, an exception, a hang)."""

    nodeid: str
    key: str
    chapter: str
    text: str


@dataclass
class Run:
    """What the page shows: ``histories`` maps ``(hardware, chapter, key)`` to the entry's recordings."""

    records: list[dict[str, Any]]
    failed: list[Failed] = field(default_factory=list)
    skipped: int = 0
    histories: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    written: str = ""
    ended_early: str | None = None


def _verdict(rec: dict[str, Any]) -> str:
    return rec.get("verdict") or "FAILED"


def _rank(rec: dict[str, Any]) -> int:
    return RANK.get(_verdict(rec), 5)


def _distinct(values: Sequence[Any], limit: int = 3) -> str:
    seen = list(dict.fromkeys(str(v) for v in values if v not in (None, "")))
    more = f" (and {len(seen) - limit} more)" if len(seen) > limit else ""
    return "; ".join(seen[:limit]) + more if seen else NONE


def ceilings(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of each ceiling measured by the run's processes: ``copy_gbps``, ``matmul_tflops`` per precision,
    and ``busbw_gbps`` per rank count of the distributed cases."""
    copy, peaks, busbw = [], {}, {}
    for rec in records:
        roofs = rec.get("ceilings") or {}
        if roofs.get("copy_gbps"):
            copy.append(roofs["copy_gbps"])
        for name, value in (roofs.get("matmul_tflops") or {}).items():
            if value:
                peaks.setdefault(name, []).append(value)
        if roofs.get("busbw_gbps"):
            busbw.setdefault((rec.get("provenance") or {}).get("ranks") or 0, []).append(roofs["busbw_gbps"])
    return {"copy_gbps": statistics.median(copy) if copy else None,
            "matmul_tflops": {name: statistics.median(v) for name, v in peaks.items()},
            "busbw_gbps": {ranks: statistics.median(v) for ranks, v in sorted(busbw.items())}}


def _machine(run: Run) -> str:
    provenance = [rec.get("provenance") or {} for rec in run.records]
    rows = [(label, _distinct([p.get(key) for p in provenance])) for label, key in MACHINE]
    rows = [(label, value) for label, value in rows if value != NONE]
    rows.insert(0, ("hardware key", _distinct([rec.get("hardware") for rec in run.records])))
    rows.append(("timing", _distinct([rec.get("backend") for rec in run.records])))
    roofs = ceilings(run.records)
    measured = [f"copy {roofs['copy_gbps']:.0f} GB/s"] if roofs["copy_gbps"] else []
    measured += [f"matmul {name} {value:.3g} TFLOP/s" for name, value in sorted(roofs["matmul_tflops"].items())]
    measured += [f"all-reduce bus {value:.0f} GB/s ({ranks} ranks)" for ranks, value in roofs["busbw_gbps"].items()]
    rows.append(("measured ceilings", ", ".join(measured) or "none measured (the host clock measures none)"))
    return '<dl class="machine">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows) + "</dl>"


def _counts(run: Run) -> str:
    counts: dict[str, int] = {}
    for rec in run.records:
        counts[_verdict(rec)] = counts.get(_verdict(rec), 0) + 1
    counts["FAILED"] = len(run.failed)
    counts["SKIPPED"] = run.skipped
    chips = [f'<span class="chip v-{name}">{name} {counts.get(name, 0)}</span>'
             for name in (*RANK, "SKIPPED") if counts.get(name)]
    return f'<p class="counts">{len(run.records) + len(run.failed)} cases: {" ".join(chips) or "none ran"}</p>'


def _attention(run: Run) -> str:
    items = [f'<li><b>{escape(f.key)}</b> <span class="chip v-FAILED">FAILED</span> {escape(error_line(f.text))}'
             f"<details><summary>traceback</summary><pre>{escape(_tail(f.text))}</pre></details></li>"
             for f in sorted(run.failed, key=lambda f: f.nodeid)]
    items += [f'<li><b>{escape(rec["key"])}</b> <span class="chip v-{escape(_verdict(rec))}">{escape(_verdict(rec))}'
              f'</span> {escape(rec.get("reason") or "")}</li>'
              for rec in sorted(run.records, key=lambda r: (_rank(r), r["key"])) if _rank(rec) <= RANK["INCONCLUSIVE"]]
    return f'<section id="attention"><h2>Needs attention</h2><ul>{"".join(items)}</ul></section>' if items else ""


def error_line(text: str) -> str:
    """The exception of a pytest failure text: the first line of its last block of ``E`` lines (where pytest prints
    the exception that ended the test), else its last line."""
    lines = [line for line in text.splitlines() if line.strip()]
    starts = [line[1:].strip() for before, line in zip(["", *lines], lines)
              if line.startswith("E ") and not before.startswith("E ")]
    return starts[-1] if starts else (lines[-1].strip() if lines else "")


def _tail(text: str) -> str:
    lines = text.splitlines()
    return "\n".join((["..."] if len(lines) > TRACEBACK_LINES else []) + lines[-TRACEBACK_LINES:])


def _charts(records: Sequence[dict[str, Any]]) -> str:
    roofs = ceilings([rec for rec in records if not (rec.get("ceilings") or {}).get("busbw_gbps")])
    roof_pairs, bw_pairs = [], []
    for rec in records:
        work = rec.get("work") or {}
        if not (work.get("bytes") and (rec.get("baseline") or {}).get("median_ms")
                and (rec.get("optimized") or {}).get("median_ms")) or (rec.get("provenance") or {}).get("ranks"):
            continue
        rates = {arm: achieved(rec, arm) for arm in ("baseline", "optimized")}
        if work.get("flops"):
            intensity = work["flops"] / work["bytes"]
            points = {arm: (intensity, rates[arm]["tflops"]) for arm in rates}
            notes = {arm: f"{rates[arm]['tflops']:.3g} TFLOP/s at {intensity:.3g} flop/byte" for arm in rates}
            roof_pairs.append(svg.Pair(rec["key"], _verdict(rec), points["baseline"], points["optimized"],
                                       notes["baseline"], notes["optimized"]))
        else:
            points = {arm: (work["bytes"], rates[arm]["gbps"]) for arm in rates}
            notes = {arm: f"{rates[arm]['gbps']:.3g} GB/s moving {format_bytes(work['bytes'])}" for arm in rates}
            bw_pairs.append(svg.Pair(rec["key"], _verdict(rec), points["baseline"], points["optimized"],
                                     notes["baseline"], notes["optimized"]))
    parts = []
    if roof_pairs:
        parts.append(f'<figure>{svg.roofline(roof_pairs, roofs["copy_gbps"], roofs["matmul_tflops"])}<figcaption>'
                     f"Roofline: each case's arithmetic intensity from its work model against what each arm achieved "
                     f"(open: baseline, filled: optimized), under the ceilings measured in this run.</figcaption>"
                     f"</figure>")
    if bw_pairs:
        parts.append(f'<figure>{svg.bandwidth(bw_pairs, roofs["copy_gbps"])}<figcaption>Bandwidth: bytes each '
                     f"call must move against the bandwidth each arm achieved, under the measured copy ceiling."
                     f"</figcaption></figure>")
    return f'<section id="charts"><h2>Where the cases sit</h2>{"".join(parts)}</section>' if parts else ""


def goal_metric(rec: dict[str, Any]) -> str:
    """The goal's own measure: peak memory and the time it costs, throughput, request latency, or achieved rates and
    % of ceiling; with the workload statistics, for an overlap pair the communication it hides, and for a stack its
    ablations."""
    parts = []
    if rec.get("goal") == "memory":
        base, opt = (rec.get(arm) or {} for arm in ("baseline", "optimized"))
        parts.append(f"peak {format_bytes(base.get('peak_bytes'))} -> {format_bytes(opt.get('peak_bytes'))} "
                     f"({format_ratio(rec['speedup'])}x lower)")
        if rec.get("time_speedup"):
            ratio, lo, hi = rec["time_speedup"]
            parts.append(f"time {format_ratio(ratio)}x [{format_ratio(lo)}, {format_ratio(hi)}]")
    else:
        rates, share = format_achieved(rec), format_ceiling(rec)
        if rates != NONE:
            parts.append(rates + ("" if share == NONE else f" ({share} of ceiling)"))
    hidden = communication(rec)["hidden"]
    if hidden is not None:
        parts.append(f"communication hidden {100 * hidden:.0f}%")
    parts += notes.latency_parts(rec)
    parts += [f"{name} {value:.3g}" for name, value in sorted((rec.get("workload") or {}).items())]
    ablations = notes.ablation_parts(rec)
    if ablations:
        parts.append("ablations: " + ", ".join(ablations))
    return "; ".join(parts) or NONE


def _first_call(rec: dict[str, Any]) -> tuple[str, float]:
    cells, slowest = [], 0.0
    for arm in ("baseline", "optimized"):
        first = (rec.get(arm) or {}).get("first_call_ms")
        graphs = (rec.get(arm) or {}).get("compiled_graphs")
        cells.append(format_ms(first) + (f" ({graphs} graph{'s' * (graphs != 1)})" if graphs else ""))
        slowest = max(slowest, first or 0.0)
    return " / ".join(cells) if slowest else NONE, slowest


def _history(rec: dict[str, Any], recordings: list[dict[str, Any]]) -> str:
    points = [(r["speedup"], f"{(r.get('date') or '')[:10]} {r.get('commit') or ''} {r.get('gpu') or ''}: "
                             f"{format_ratio(r['speedup'])}x" + (f" {percent(r['noise_margin'])}"
                                                                 if r.get("noise_margin") is not None else ""))
              for r in recordings if isinstance(r.get("speedup"), (int, float))]
    current = None
    if rec.get("speedup") and not (points and points[-1][0] == rec["speedup"]):
        current = (rec["speedup"], f"this run: {format_ratio(rec['speedup'])}x", _verdict(rec))
    return svg.sparkline(points, current) if points or current else NONE


def _interval(rec: dict[str, Any]) -> str:
    if not rec.get("speedup"):
        return NONE
    gate, ci = rec.get("gate") or {}, rec.get("ci") or [None, None]
    band = (gate["low"], gate.get("high")) if gate.get("low") else None
    title = (f"speedup {format_speedup(rec)}; gate {format_expected(rec)}"
             + (f"; min_speedup {format_ratio(rec['min_speedup'])}x" if rec.get("min_speedup") else ""))
    return svg.interval(rec["speedup"], ci[0], ci[1], band=band, floor=rec.get("min_speedup"),
                        expected=(rec.get("expected") or {}).get("speedup"), verdict=_verdict(rec), title=title)


def _cell(text: str, sort: Any = None, raw: bool = False) -> str:
    key = "" if sort is None else f' data-sort="{escape(str(sort))}"'
    return f"<td{key}>{text if raw else escape(text)}</td>"


def _row(rec: dict[str, Any], run: Run) -> str:
    verdict = _verdict(rec)
    reason = escape(rec.get("reason") or "")
    why = f' title="{reason}"' if verdict == "PASS" else ""
    traces = "".join(f' <a href="{escape(path)}">{escape(arm)} trace</a>'
                     for arm, path in (rec.get("traces") or {}).items())
    detail = f'<div class="why">{reason}{traces}</div>' if verdict != "PASS" or traces else ""
    first, slowest = _first_call(rec)
    recordings = run.histories.get((rec.get("hardware"), rec.get("chapter"), rec["key"]), [])
    cells = [f'<td data-sort="{escape(rec["key"])}"{why}><b>{escape(rec["key"])}</b>{detail}</td>',
             _cell(f'<span class="chip v-{escape(verdict)}">{escape(format_verdict(rec))}</span>', _rank(rec), True),
             _cell(arm_cell(rec, "baseline"), (rec.get("baseline") or {}).get("median_ms")),
             _cell(arm_cell(rec, "optimized"), (rec.get("optimized") or {}).get("median_ms")),
             _cell(f"{format_speedup(rec)}<br><small>gate {escape(format_expected(rec))}</small>",
                   rec.get("speedup"), True),
             _cell(_interval(rec), raw=True), _cell(goal_metric(rec)), _cell(format_energy(rec)),
             _cell(first, slowest), _cell(_history(rec, recordings), raw=True)]
    return f'<tr data-case="{escape(rec["key"])}" data-verdict="{escape(verdict)}">{"".join(cells)}</tr>'


def _failed_row(failed: Failed) -> str:
    cells = [f'<td data-sort="{escape(failed.key)}"><b>{escape(failed.key)}</b><div class="why">'
             f"{escape(error_line(failed.text))}</div>"
             f"</td>", _cell('<span class="chip v-FAILED">FAILED</span>', RANK["FAILED"], True),
             *(_cell(NONE, "") for _ in HEADERS[2:])]
    return f'<tr data-case="{escape(failed.key)}" data-verdict="FAILED">{"".join(cells)}</tr>'


def _chapters(run: Run) -> str:
    chapters: dict[str, list[tuple[int, str, str]]] = {}
    for rec in run.records:
        chapters.setdefault(rec.get("chapter") or NONE, []).append((_rank(rec), rec["key"], _row(rec, run)))
    for failed in run.failed:
        chapters.setdefault(failed.chapter, []).append((RANK["FAILED"], failed.key, _failed_row(failed)))
    head = "".join(f'<th data-col="{i}"{" data-num=1" if num else ""}>{escape(name)}</th>'
                   for i, (name, num) in enumerate(HEADERS))
    sections = []
    for chapter, rows in sorted(chapters.items(), key=lambda item: (min(r[0] for r in item[1]), item[0])):
        body = "".join(row for _, _, row in sorted(rows))
        sections.append(f'<section class="chapter"><h2>{escape(chapter)}</h2><table><thead><tr>{head}</tr></thead>'
                        f"<tbody>{body}</tbody></table></section>")
    return "".join(sections)


def render(run: Run) -> str:
    """The whole page."""
    early = f'<p class="early">This run ended early: {escape(run.ended_early)}</p>' if run.ended_early else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>aiperf report</title>'
            f"<style>{html_assets.STYLE}</style></head><body><header><h1>aiperf report</h1>"
            f'<p class="written">{escape(run.written)}</p>{early}{_counts(run)}{_machine(run)}</header>'
            f"{_attention(run)}{_charts(run.records)}{html_assets.CONTROLS}{_chapters(run)}{html_assets.LEGEND}"
            f"<script>{html_assets.SCRIPT}</script></body></html>\n")
