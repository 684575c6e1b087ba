"""The entry of one measured record, and the pooling of an entry's recordings (mode "add").

An entry keeps the measured numbers exactly, the timing backend that took them (``timing``), the provenance of the
process that measured them, and its recordings: one per measuring process, the latest ``MAX_RECORDINGS`` of them.
"""

from __future__ import annotations

from typing import Any

from pytest_aiperf.expectations_schema import MAX_MARGIN, entry_problem, is_number, is_positive

MAX_RECORDINGS = 8


def _arm_entry(arm: dict[str, Any]) -> dict[str, Any]:
    return {"median_ms": arm["median_ms"], "samples": len(arm["samples_ms"]), "energy_mj": arm.get("energy_mj")}


def record_problem(record: dict) -> str | None:
    """Why ``record`` is not a measured record (see record.py) that an update can take, or None."""
    for field in ("key", "chapter", "hardware", "backend"):
        if not (isinstance(record.get(field), str) and record[field]):
            return f"{field} is {record.get(field)!r}, expected a name"
    speedup, margin = record.get("speedup"), record.get("noise_margin")
    if not is_positive(speedup) or not (is_number(margin) and margin >= 0):
        return (f"cannot record speedup={speedup!r}, noise_margin={margin!r}; an expectation needs a positive "
                "speedup and a non-negative noise margin")
    for arm in ("baseline", "optimized"):
        value = record.get(arm)
        if not (isinstance(value, dict) and isinstance(value.get("samples_ms"), list) and "median_ms" in value):
            return f"{arm} is {value!r}, expected an arm record (record.py)"
    return None


def entry_from_record(record: dict, *, date: str, commit: str | None, dirty: bool | None) -> dict:
    """The expectations entry of one measured record (see record.py), stamped with when and from which commit; it
    keeps the record's timing backend as ``timing``, its ``known_loss`` when the case declares one, and the
    ``workload`` statistics it was measured at, and with ``--aiperf-profile`` each arm's time per kernel
    (``profile``), which a later regression's message compares with.
    Raises ValueError for a record that ``load`` would refuse to read back (no positive speedup, a noise margin
    outside 0..``MAX_MARGIN``, ...), so no file is ever written that the next session cannot use."""
    problem = record_problem(record)
    if problem is None and record["noise_margin"] > MAX_MARGIN:
        problem = f"cannot record noise_margin={record['noise_margin']!r}, wider than MAX_MARGIN {MAX_MARGIN}"
    if problem is not None:
        raise ValueError(f"{record.get('key')}: {problem}")
    speedup, margin, ci = record["speedup"], record["noise_margin"], record.get("ci")
    provenance = {**(record.get("provenance") or {}), "date": date, "commit": commit, "dirty": dirty}
    entry = {
        "speedup": speedup,
        "ci": None if ci is None else list(ci),
        "noise_margin": margin,
        "margin_basis": "this recording",
        "goal": record.get("goal"),
        "rounds": record.get("rounds"),
        "timing": record["backend"],
        "baseline": _arm_entry(record["baseline"]),
        "optimized": _arm_entry(record["optimized"]),
        "provenance": provenance,
        "recordings": [_recording(speedup, margin, record["baseline"]["median_ms"],
                                  record["optimized"]["median_ms"], provenance)],
    }
    reason = record.get("known_loss")
    if isinstance(reason, str) and reason.strip():
        entry["known_loss"] = reason
    if record.get("workload"):
        entry["workload"] = dict(record["workload"])
    if record.get("profile"):
        entry["profile"] = record["profile"]
    problem = entry_problem(entry)
    if problem is not None:
        raise ValueError(f"{record['key']}: cannot record an entry that {problem}")
    return entry


def _recording(speedup: float, margin: float, base_ms: float, opt_ms: float, provenance: dict) -> dict:
    return {"speedup": speedup, "noise_margin": margin, "baseline_ms": base_ms, "optimized_ms": opt_ms,
            "date": provenance.get("date"), "commit": provenance.get("commit"), "gpu": provenance.get("gpu"),
            "gpu_uuid": provenance.get("gpu_uuid"), "host_cpus": provenance.get("host_cpus"),
            "host_cpu_model": provenance.get("host_cpu_model"), "launch_us": provenance.get("launch_us")}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def pool(old: dict, new: dict) -> dict:
    """Pool a new recording with an entry's earlier ones (the latest ``MAX_RECORDINGS``).

    One recording sees only its own process's noise; a speedup also moves between processes and between GPUs
    of the same model (allocation, host CPU, the card itself). Pooled, the expected speedup is the median of
    the recordings, and the margin is at least as wide as their spread (the band then holds every recording)
    and at least the median of their in-run noise margins. ``margin_basis`` says which bound set it. The pooled
    ``ci`` is the range of the recorded speedups (one process's bootstrap interval would not hold the median).
    The result's margin may exceed ``MAX_MARGIN``; ``apply_updates`` refuses to write such a pool.
    """
    earlier = old.get("recordings") or [_recording(old["speedup"], old["noise_margin"],
                                                   (old.get("baseline") or {}).get("median_ms"),
                                                   (old.get("optimized") or {}).get("median_ms"),
                                                   old.get("provenance") or {})]
    recordings = [*earlier, *new["recordings"]][-MAX_RECORDINGS:]
    speedup = _median([r["speedup"] for r in recordings])
    spread = max(max(r["speedup"] / speedup, speedup / r["speedup"]) - 1 for r in recordings)
    noise = _median([r["noise_margin"] for r in recordings if is_number(r.get("noise_margin"))] or [0.0])
    count = len(recordings)
    basis = (f"spread of {count} recordings" if spread > noise else f"median in-run noise of {count} recordings")

    def arm(name: str) -> dict:
        values = [r[f"{name}_ms"] for r in recordings if is_number(r.get(f"{name}_ms"))]
        return {**new[name], "median_ms": _median(values) if values else new[name]["median_ms"]}

    speedups = [r["speedup"] for r in recordings]
    return {**new, "speedup": speedup, "ci": [min(speedups), max(speedups)], "noise_margin": max(spread, noise),
            "margin_basis": basis,
            "baseline": arm("baseline"), "optimized": arm("optimized"), "recordings": recordings}
