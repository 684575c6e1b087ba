"""The notes printed under the summary table: failures and their reasons, cases below their floor, first calls that
compiled, memory and latency results, ablation tables, where the measuring processes ran, and which cases only a floor
gated.

Pure, like ``report``: records in, a string out ("" when there is nothing to say).
"""

from __future__ import annotations

from typing import Any

from pytest_aiperf.ablations import contributions, product
from pytest_aiperf.latency import METRICS
from pytest_aiperf.report import FAILING, format_ms, format_rate, format_ratio


def failures_block(records: list[dict[str, Any]]) -> str:
    """``key: reason`` for every REGRESSED or INCONCLUSIVE case, in table order; empty string when none failed."""
    failing = sorted((r for r in records if r.get("verdict") in FAILING),
                     key=lambda r: (r.get("chapter") or "", r["key"]))
    return "\n".join(f"{r['key']}: {r.get('reason') or r['verdict']}" for r in failing)


def below_floor_block(records: list[dict[str, Any]]) -> str:
    """Cases measured below their min_speedup floor, whatever the verdict, each saying whether the case declares
    that loss (``known_loss``, with its reason) or not, and a count of both: a gate never quietly accepts a
    slowdown."""
    below = [r for r in records if r.get("speedup") and r.get("min_speedup") and r["speedup"] < r["min_speedup"]]
    if not below:
        return ""
    lines = []
    for r in below:
        head = (f"{r['key']}: {format_ratio(r['speedup'])}x is below its min_speedup floor "
                f"{format_ratio(r['min_speedup'])}x on {r['hardware']}")
        lines.append(f"{head}: declared known loss ({r['known_loss']})" if r.get("known_loss") else
                     f"{head}: the optimization does not deliver its claim here")
    declared = sum(bool(r.get("known_loss")) for r in below)
    count = f"{len(below)} case{'s' * (len(below) != 1)} below the floor, {declared} with a declared known loss"
    return "\n".join([count, *lines])


def compile_block(records: list[dict[str, Any]]) -> str:
    """Each arm that compiled on its first call (graphs from torch.compile, or a first call at least 100 ms and 10x
    past its steady time: Triton autotuning, graph capture): the first call's wall time, outside the samples, beside
    the arm's steady median. Empty string when nothing compiled."""
    lines = []
    for r in sorted(records, key=lambda r: (r.get("chapter") or "", r["key"])):
        arms = []
        for name in ("baseline", "optimized"):
            arm = r.get(name) or {}
            first, steady, graphs = arm.get("first_call_ms"), arm.get("wall_median_ms"), arm.get("compiled_graphs")
            if first is None or not (graphs or (steady and first >= 100 and first >= 10 * steady)):
                continue
            made = f", {graphs} graph{'s' * (graphs != 1)}" if graphs else ""
            arms.append(f"{name} {format_ms(first)}{made} (steady {format_ms(steady)})")
        if arms:
            lines.append(f"{r['key']}: {'; '.join(arms)}")
    return "\n".join(["first calls that compiled (outside the samples):", *lines]) if lines else ""


def memory_block(records: list[dict[str, Any]]) -> str:
    """For each memory-goal case: the memory ratio and the time it costs (baseline time / optimized time)."""
    lines = [f"{r['key']}: peak memory {format_ratio(r['speedup'])}x lower; time ratio "
             f"{format_ratio(r['time_speedup'][0])}x [{format_ratio(r['time_speedup'][1])}, "
             f"{format_ratio(r['time_speedup'][2])}]"
             for r in sorted(records, key=lambda r: r["key"]) if r.get("goal") == "memory" and r.get("time_speedup")]
    return "\n".join(lines)


def latency_parts(r: dict[str, Any]) -> list[str]:
    """Both arms' request-level metrics of a latency record (medians over calls): TTFT and TPOT p50/p99 in ms,
    output tokens per second, and the engine statistics both arms report (``latency.Timeline.engine``); [] for
    another record."""
    base, opt = ((r.get(arm) or {}).get("latency") or {} for arm in ("baseline", "optimized"))
    if not base or not opt:
        return []
    parts = [f"{n} {format_ms(base[n])} -> {format_ms(opt[n])}"
             for n in ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99")]
    parts.append(f"tokens/s {format_rate(base['tokens_per_s'])} -> {format_rate(opt['tokens_per_s'])}")
    return parts + [f"{n} {base[n]:.3g} -> {opt[n]:.3g}" for n in sorted(set(base) & set(opt) - set(METRICS))
                    if n != "tokens_per_s"]


def latency_block(records: list[dict[str, Any]]) -> str:
    """For each latency case, ``latency_parts`` on one line."""
    lines = [f"{r['key']}: {'; '.join(latency_parts(r))}" for r in sorted(records, key=lambda r: r["key"])
             if latency_parts(r)]
    return "\n".join(["request latency (baseline -> optimized, medians over calls):", *lines]) if lines else ""


def ablation_parts(r: dict[str, Any]) -> list[str]:
    """A record's ablations: each one's speedup over the baseline with its interval and what the removed technique
    contributes (full / ablated), then the contributions' product, which equals the full speedup where the
    techniques act independently (``ablations``); [] without ablations."""
    ablated, full = r.get("ablations"), r.get("speedup")
    if not ablated or not full:
        return []
    parts = contributions(full, ablated)
    rows = [f"{name} {format_ratio(rec['speedup'])}x [{format_ratio(rec['ci'][0])}, {format_ratio(rec['ci'][1])}]"
            f" ({name.removeprefix('no_')} gives {format_ratio(parts[name])}x)" for name, rec in ablated.items()]
    return [*rows, f"the parts multiply to {format_ratio(product(full, ablated))}x"]


def ablation_block(records: list[dict[str, Any]]) -> str:
    """For each case with ablation arms: the full stack's speedup, then ``ablation_parts``, on one line."""
    lines = [f"{r['key']}: full {format_ratio(r['speedup'])}x; {'; '.join(ablation_parts(r))}"
             for r in sorted(records, key=lambda r: (r.get("chapter") or "", r["key"])) if ablation_parts(r)]
    return "\n".join(["ablations (the optimized stack with one technique removed, speedup over the baseline; "
                      "reported, never gated):", *lines]) if lines else ""


def host_note(records: list[dict[str, Any]]) -> str:
    """Where the measuring processes ran: the host CPUs they kept to, and their CUDA builds (one line each)."""
    lines = []
    for rec in records:
        prov = rec.get("provenance") or {}
        cpus = " on ".join(part for part in (prov.get("host_cpus"), prov.get("host_cpu_model")) if part)
        for line in (cpus, rec.get("build")):
            if line and line not in lines:
                lines.append(line)
    return "\n".join(lines)


def floor_note(records: list[dict[str, Any]]) -> str:
    """Say which hardware has cases without a recorded expectation, gated only by their min_speedup floor."""
    by_hw: dict[str, int] = {}
    for rec in records:
        if (rec.get("gate") or {}).get("source") == "floor":
            by_hw[rec["hardware"]] = by_hw.get(rec["hardware"], 0) + 1
    return "\n".join(f"no expectation recorded for {hw}: {n} case{'s' * (n != 1)} gated by the min_speedup floor "
                     f"(record them with --update-expectations)" for hw, n in sorted(by_hw.items()))
