"""What an expectations file may hold, checked at two levels.

The document level (an object with ``format``, ``hardware``, ``chapter`` and an object of ``entries``): a document
that fails it can never be merged into, so it is never written. The entry level (every field an entry's reader
uses): a malformed entry is an error that names the file and the entry; an update that records its case replaces it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

FORMAT = 1
MAX_MARGIN = 1.0  # the widest band an expectation may hold: [E / (1 + m), E * (1 + m)] = [E/2, 2E]


class ExpectationsError(Exception):
    """An expectations file that cannot be used; the message names the file and what is wrong (``problem``), and
    for a malformed entry its ``key``."""

    def __init__(self, path: Path, problem: str, key: str | None = None) -> None:
        self.path = path
        self.key = key
        self.problem = problem if key is None else f"entry {key!r} {problem}"
        super().__init__(f"{path}: {self.problem}; fix or delete it - it was not modified")


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_positive(value: Any) -> bool:
    return is_number(value) and value > 0


def check_document(path: Path, doc: Any, hardware: str | None, chapter: str | None) -> dict[str, Any]:
    """``doc`` if it is a document of this format whose ``hardware``/``chapter`` fields (where present) are strings
    that match the file's path (``hardware``/``chapter``, when given) and whose ``entries`` is an object; else
    raises ``ExpectationsError``. Entries are not looked into (``entry_problem``)."""
    if not isinstance(doc, dict):
        raise ExpectationsError(path, f"top level is {type(doc).__name__}, expected an object")
    version = doc.get("format")
    if not isinstance(version, int) or isinstance(version, bool) or version != FORMAT:
        raise ExpectationsError(path, f"format is {version!r}, this version of pytest-aiperf reads format {FORMAT}")
    for field, wanted in (("hardware", hardware), ("chapter", chapter)):
        if field in doc and not isinstance(doc[field], str):
            raise ExpectationsError(path, f"{field} is {doc[field]!r}, expected a string")
        if wanted is not None and field in doc and doc[field] != wanted:
            raise ExpectationsError(path, f"{field} is {doc[field]!r} but the file's path says {wanted!r}")
    entries = doc.get("entries")
    if not isinstance(entries, dict):
        raise ExpectationsError(path, f"'entries' is {type(entries).__name__}, expected an object of case ids")
    return doc


def _optional_positive(owner: dict[str, Any], field: str, where: str) -> str | None:
    value = owner.get(field)
    if value is None or is_positive(value):
        return None
    return f"has {where}{field} {value!r}, expected null or a positive number"


def _optional_text(owner: dict[str, Any], field: str, where: str) -> str | None:
    value = owner.get(field)
    return None if value is None or isinstance(value, str) else f"has {where}{field} {value!r}, expected a string"


def _recording_problem(index: int, recording: Any) -> str | None:
    where = f"recordings[{index}] "
    if not isinstance(recording, dict):
        return f"has {where.strip()} {recording!r}, expected an object"
    if not is_positive(recording.get("speedup")):
        return f"has {where}speedup {recording.get('speedup')!r}, expected a positive number"
    margin = recording.get("noise_margin")
    if margin is not None and not (is_number(margin) and margin >= 0):
        return f"has {where}noise_margin {margin!r}, expected null or a non-negative number"
    for field in ("launch_us", "baseline_ms", "optimized_ms"):
        problem = _optional_positive(recording, field, where)
        if problem:
            return problem
    return _optional_text(recording, "gpu", where)


def entry_problem(entry: Any) -> str | None:
    """What is wrong with one entry, as the rest of a sentence that starts with ``entry '<key>'``; None if nothing.

    Checked: ``speedup`` (a positive number), ``noise_margin`` (from 0 to ``MAX_MARGIN``), ``ci`` (absent, null or
    two positive numbers), ``baseline``/``optimized`` (absent or objects whose ``median_ms`` is null or positive),
    ``provenance`` (absent or an object; its ``gpu`` a string, its ``launch_us`` null or positive), ``recordings``
    (absent or a list of objects with a positive ``speedup``, a non-negative ``noise_margin``, positive
    ``launch_us``/``baseline_ms``/``optimized_ms`` and a string ``gpu``, each where not null), ``timing`` (absent or
    a string), ``known_loss`` (absent or a non-empty string), ``workload`` (absent or an object of finite numbers)
    and ``profile`` (absent or ``valid_profile``)."""
    if not isinstance(entry, dict):
        return f"is {type(entry).__name__}, expected an object"
    speedup, margin = entry.get("speedup"), entry.get("noise_margin")
    if not is_positive(speedup):
        return f"has speedup {speedup!r}, expected a positive number"
    if not (is_number(margin) and 0 <= margin <= MAX_MARGIN):
        return (f"has noise_margin {margin!r}, expected a number from 0 to {MAX_MARGIN:g} "
                f"(a band of at most [E/{1 + MAX_MARGIN:g}, {1 + MAX_MARGIN:g}E])")
    ci = entry.get("ci")
    if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(is_positive(v) for v in ci)):
        return f"has ci {ci!r}, expected null or two positive numbers"
    for arm in ("baseline", "optimized"):
        value = entry.get(arm, {})
        if not isinstance(value, dict):
            return f"has {arm} {value!r}, expected an object"
        problem = _optional_positive(value, "median_ms", f"{arm} ")
        if problem:
            return problem
    provenance = entry.get("provenance", {})
    if not isinstance(provenance, dict):
        return f"has provenance {provenance!r}, expected an object"
    problem = _optional_text(provenance, "gpu", "provenance ") or _optional_positive(provenance, "launch_us",
                                                                                        "provenance ")
    if problem:
        return problem
    recordings = entry.get("recordings", [])
    if not isinstance(recordings, list):
        return f"has recordings {recordings!r}, expected a list of objects with a positive speedup"
    for index, recording in enumerate(recordings):
        problem = _recording_problem(index, recording)
        if problem:
            return problem
    if "timing" in entry and not isinstance(entry["timing"], str):
        return f"has timing {entry['timing']!r}, expected a string (the timing backend)"
    if "known_loss" in entry and not (isinstance(entry["known_loss"], str) and entry["known_loss"].strip()):
        return f"has known_loss {entry['known_loss']!r}, expected the declared reason for the loss"
    workload = entry.get("workload", {})
    if not (isinstance(workload, dict) and all(isinstance(k, str) and is_number(v) for k, v in workload.items())):
        return f"has workload {workload!r}, expected an object of statistic names and finite numbers"
    if "profile" in entry and not valid_profile(entry["profile"]):
        return "has a profile that is not {baseline, optimized} of kernel names to microseconds"
    return None


def valid_profile(profile: Any) -> bool:
    """Whether ``profile`` has the shape of a recorded kernel profile: both arms, each kernel names to finite,
    non-negative microseconds per call."""
    if not isinstance(profile, dict):
        return False
    for arm in ("baseline", "optimized"):
        kernels = profile.get(arm)
        if not isinstance(kernels, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e12
                for k, v in kernels.items()):
            return False
    return True
