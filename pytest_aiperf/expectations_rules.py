"""What an update may record: each rule answers with the sentence that says why a record is refused, or None.

In every mode a record is refused when it was measured on a GPU whose key is not the one it is filed under, when it
was timed on the host (``cpu-clock``, or a record whose device is the CPU) but is filed under a GPU's key, when its
noise margin is wider than ``MAX_MARGIN``, and when its speedup is below its case's floor (``min_speedup``) unless
the case declares the loss (``known_loss``). Mode "add" also refuses to pool a record with an entry recorded by
another timing backend or on another GPU model, and a pool whose margin would be wider than ``MAX_MARGIN``.
"""

from __future__ import annotations

import re
from typing import Any

from pytest_aiperf import machine
from pytest_aiperf.expectations_schema import MAX_MARGIN, is_number

GPU_TIMING = "cuda-events"
HOST_TIMING = "cpu-clock"
GPU_KEYS = frozenset(machine.HARDWARE_KEYS.values())
_WORLD_PREFIX = re.compile(r"^[0-9]+x_")


def gpu_key(hardware: str) -> str:
    """The single-GPU key of a hardware key: ``4x_h200`` -> ``h200``."""
    return _WORLD_PREFIX.sub("", hardware, count=1)


def entry_timing(entry: dict[str, Any]) -> str:
    """The timing backend an entry was recorded by: its ``timing``, or for an entry written before that field,
    ``cuda-events`` when its provenance names a GPU and ``cpu-clock`` when it does not."""
    timing = entry.get("timing")
    if isinstance(timing, str):
        return timing
    return GPU_TIMING if (entry.get("provenance") or {}).get("gpu") else HOST_TIMING


def entry_gpus(entry: dict[str, Any]) -> set[str | None]:
    """The GPU models (NVML names; None: no GPU) of an entry's recordings; a recording written before recordings
    named their GPU counts as the entry's provenance GPU."""
    fallback = (entry.get("provenance") or {}).get("gpu")
    return {recording.get("gpu", fallback) for recording in entry.get("recordings") or [{}]}


def percent(margin: float) -> str:
    """A noise margin in percent: ``+-16.5%``, ``+-221%``, and from a million percent up ``+-1e310%``."""
    if abs(margin) >= 1e4:
        mantissa, exponent = f"{margin:.2e}".split("e")
        return f"+-{float(mantissa):g}e{int(exponent) + 2}%"
    value = 100 * margin
    return f"+-{value:.0f}%" if abs(value) >= 100 else f"+-{value:.3g}%"


def _ratios(first: float, second: float) -> tuple[str, str]:
    """Both ratios with two decimals, or with as many more as it takes to tell them apart."""
    digits = 2
    while f"{first:.{digits}f}" == f"{second:.{digits}f}" and digits < 6:
        digits += 1
    return f"{first:.{digits}f}x", f"{second:.{digits}f}x"


def _gpu(name: str | None) -> str:
    return name or "no GPU"


def record_refusal(record: dict[str, Any]) -> str | None:
    """Why no mode may record ``record`` (a valid record, see ``record.py``), or None."""
    margin = record["noise_margin"]
    if margin > MAX_MARGIN:
        return (f"its noise margin {percent(margin)} is wider than {percent(MAX_MARGIN)}, the widest band an "
                "expectation may hold: re-measure on a quieter machine")
    key = gpu_key(record["hardware"])
    gpu = (record.get("provenance") or {}).get("gpu")
    if isinstance(gpu, str) and machine.is_known(gpu) and machine.hardware_key(gpu) != key:
        return (f"measured on {gpu} (key {machine.hardware_key(gpu)}), not {key}: an expectation holds only "
                "measurements of the GPU it is filed under")
    timing = record["backend"]
    if key in GPU_KEYS and (timing == HOST_TIMING or record.get("device") == "cpu"):
        return (f"timed by {timing} on the host, but filed under the GPU key {key}: a GPU's expectations hold "
                "only timings taken on that GPU")
    floor, speedup, reason = record.get("min_speedup"), record["speedup"], record.get("known_loss")
    if is_number(floor) and speedup < floor and not (isinstance(reason, str) and reason.strip()):
        measured, wanted = _ratios(speedup, floor)
        return (f"{measured} is below min_speedup {wanted}: a loss is recorded only for a case that declares "
                "known_loss with its reason")
    return None


def pool_refusal(entry: dict[str, Any], record: dict[str, Any]) -> str | None:
    """Why mode "add" may not pool ``record`` with the valid ``entry``, or None."""
    timing, recorded = record["backend"], entry_timing(entry)
    if timing != recorded:
        return (f"timed by {timing}, but the entry's recordings by {recorded}: mode add pools recordings of one "
                "timing backend only (mode all replaces them)")
    gpu = (record.get("provenance") or {}).get("gpu")
    others = entry_gpus(entry) - {gpu}
    if others:
        return (f"measured on {_gpu(gpu)}, but the entry's recordings on {', '.join(sorted(map(_gpu, others)))}: "
                "mode add pools recordings of one GPU model only (mode all replaces them)")
    return None


def margin_refusal(pooled: dict[str, Any]) -> str | None:
    """Why a pooled entry may not be written (its margin is wider than ``MAX_MARGIN``), or None."""
    margin = pooled["noise_margin"]
    if margin <= MAX_MARGIN:
        return None
    low, high = pooled["ci"]
    return (f"the recordings disagree by more than {1 + MAX_MARGIN:g}x: pooled, {len(pooled['recordings'])} "
            f"recordings from {low:.2f}x to {high:.2f}x would need a margin of {percent(margin)}, wider than "
            f"{percent(MAX_MARGIN)}; re-measure, or replace them with mode all")
