"""Expectations: golden files of measured speedups, one per chapter per hardware, checked into the repository.

``<root>/<hardware>/<chapter>.json`` holds ``{"format": 1, "hardware", "chapter", "entries": {case id: entry}}``
written with sorted keys and indent 2, so a re-recording reads as a small diff. Numbers are stored exactly as
measured. A file that cannot be trusted (corrupt, another format, another hardware's) is an error that names
the file, and it is never overwritten: an update only ever merges into a file it could read.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 1
MODES = ("all", "new", "add")
MAX_RECORDINGS = 8


class ExpectationsError(Exception):
    """An expectations file that cannot be used; the message names the file and what is wrong."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}; fix or delete it - it was not modified")
        self.path = path
        self.problem = problem


def path_for(root: Path, hardware: str, chapter: str) -> Path:
    """``root/hardware/chapter.json``; both names must be plain file names (no separators, not ``..``)."""
    for label, name in (("hardware", hardware), ("chapter", chapter)):
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{label} {name!r} cannot name an expectations file")
    return Path(root) / hardware / f"{chapter}.json"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read(path: Path, hardware: str | None, chapter: str | None) -> dict[str, Any] | None:
    """The whole validated document, or None if the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExpectationsError(path, f"unreadable ({exc})") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExpectationsError(path, f"not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from exc
    if not isinstance(doc, dict):
        raise ExpectationsError(path, f"top level is {type(doc).__name__}, expected an object")
    version = doc.get("format")
    if not isinstance(version, int) or isinstance(version, bool) or version != FORMAT:
        raise ExpectationsError(path, f"format is {version!r}, this version of pytest-aiperf reads format {FORMAT}")
    for field, wanted in (("hardware", hardware), ("chapter", chapter)):
        if wanted is not None and field in doc and doc[field] != wanted:
            raise ExpectationsError(path, f"{field} is {doc[field]!r} but the file's path says {wanted!r}")
    entries = doc.get("entries")
    if not isinstance(entries, dict):
        raise ExpectationsError(path, f"'entries' is {type(entries).__name__}, expected an object of case ids")
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            raise ExpectationsError(path, f"entry {key!r} is {type(entry).__name__}, expected an object")
        speedup, margin = entry.get("speedup"), entry.get("noise_margin")
        if not (_is_number(speedup) and speedup > 0):
            raise ExpectationsError(path, f"entry {key!r} has speedup {speedup!r}, expected a positive number")
        if not (_is_number(margin) and margin >= 0):
            raise ExpectationsError(path, f"entry {key!r} has noise_margin {margin!r}, "
                                          "expected a non-negative number")
        pooled = entry.get("recordings", [])
        if not isinstance(pooled, list) or not all(isinstance(r, dict) and _is_number(r.get("speedup"))
                                                   and r["speedup"] > 0 for r in pooled):
            raise ExpectationsError(path, f"entry {key!r} has recordings that are not a list of objects "
                                          "with a positive speedup")
    return doc


def load(path: Path, *, hardware: str | None = None, chapter: str | None = None) -> dict[str, dict]:
    """The entries of one file (``{}`` if it does not exist). ``hardware``/``chapter``, when given, are what
    the file's path says; a ``hardware``/``chapter`` field that disagrees is an error."""
    doc = _read(Path(path), hardware, chapter)
    return {} if doc is None else doc["entries"]


class Store:
    """The read side for one session: the expectations of one hardware, loaded once per chapter."""

    def __init__(self, root: Path, hardware: str, *, lenient: bool = False) -> None:
        self.root = Path(root)
        self.hardware = hardware
        self._chapters: dict[str, dict[str, dict]] = {}

    def preload(self) -> None:
        """Load every file of this hardware now, so a corrupt one stops the session before any test runs."""
        folder = self.root / self.hardware
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.json")):
            self._chapters[path.stem] = load(path, hardware=self.hardware, chapter=path.stem)

    def get(self, chapter: str, key: str) -> dict | None:
        """A copy of the recorded entry of case ``key`` in ``chapter``, or None if none is recorded."""
        if chapter not in self._chapters:
            path = path_for(self.root, self.hardware, chapter)
            self._chapters[chapter] = load(path, hardware=self.hardware, chapter=chapter)
        entry = self._chapters[chapter].get(key)
        return None if entry is None else copy.deepcopy(entry)


def _arm_entry(arm: dict[str, Any]) -> dict[str, Any]:
    return {"median_ms": arm["median_ms"], "samples": len(arm["samples_ms"]), "energy_mj": arm.get("energy_mj")}


def entry_from_record(record: dict, *, date: str, commit: str | None, dirty: bool | None) -> dict:
    """The expectations entry of one measured record (see record.py), stamped with when and from which commit.
    Raises ValueError for a record that ``load`` would refuse to read back (no positive speedup or no
    non-negative noise margin), so no file is ever written that the next session cannot use."""
    speedup, margin = record.get("speedup"), record.get("noise_margin")
    if not (_is_number(speedup) and speedup > 0) or not (_is_number(margin) and margin >= 0):
        raise ValueError(f"{record.get('key')}: cannot record speedup={speedup!r}, noise_margin={margin!r}; "
                         "an expectation needs a positive speedup and a non-negative noise margin")
    ci = record.get("ci")
    provenance = {**(record.get("provenance") or {}), "date": date, "commit": commit, "dirty": dirty}
    return {
        "speedup": speedup,
        "ci": None if ci is None else list(ci),
        "noise_margin": margin,
        "margin_basis": "this recording",
        "goal": record.get("goal"),
        "rounds": record.get("rounds"),
        "baseline": _arm_entry(record["baseline"]),
        "optimized": _arm_entry(record["optimized"]),
        "provenance": provenance,
        "recordings": [_recording(speedup, margin, record["baseline"]["median_ms"],
                                  record["optimized"]["median_ms"], provenance)],
    }


def _recording(speedup: float, margin: float, base_ms: float, opt_ms: float, provenance: dict) -> dict:
    return {"speedup": speedup, "noise_margin": margin, "baseline_ms": base_ms, "optimized_ms": opt_ms,
            "date": provenance.get("date"), "commit": provenance.get("commit"),
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
    """
    earlier = old.get("recordings") or [_recording(old["speedup"], old["noise_margin"],
                                                   (old.get("baseline") or {}).get("median_ms"),
                                                   (old.get("optimized") or {}).get("median_ms"),
                                                   old.get("provenance") or {})]
    recordings = [*earlier, *new["recordings"]][-MAX_RECORDINGS:]
    speedup = _median([r["speedup"] for r in recordings])
    spread = max(max(r["speedup"] / speedup, speedup / r["speedup"]) - 1 for r in recordings)
    noise = _median([r["noise_margin"] for r in recordings if _is_number(r.get("noise_margin"))] or [0.0])
    count = len(recordings)
    basis = (f"spread of {count} recordings" if spread > noise else f"median in-run noise of {count} recordings")

    def arm(name: str) -> dict:
        values = [r[f"{name}_ms"] for r in recordings if _is_number(r.get(f"{name}_ms"))]
        return {**new[name], "median_ms": _median(values) if values else new[name]["median_ms"]}

    speedups = [r["speedup"] for r in recordings]
    return {**new, "speedup": speedup, "ci": [min(speedups), max(speedups)], "noise_margin": max(spread, noise),
            "margin_basis": basis,
            "baseline": arm("baseline"), "optimized": arm("optimized"), "recordings": recordings}


@dataclass(frozen=True)
class Change:
    """What an update did to one entry. ``status``: "new", "updated", "pooled (N)" (mode "add": N recordings
    now make the entry, ``new`` is their median), "kept" (mode "new" and already recorded: ``old`` is the
    recorded speedup, ``new`` the measured one, nothing written) or "error" (the file is corrupt and was not
    written). ``old``/``new`` are speedups."""

    hardware: str
    chapter: str
    key: str
    status: str
    old: float | None
    new: float | None


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def dumps(doc: dict[str, Any]) -> str:
    """The canonical text of a document: sorted keys, indent 2, trailing newline, no NaN."""
    return json.dumps(doc, sort_keys=True, indent=2, allow_nan=False) + "\n"


def apply_updates(root: Path, records: list[dict], *, mode: str, date: str, commit: str | None,
                  dirty: bool | None) -> list[Change]:
    """Record measured cases into their files: mode "all" (re)records every record, mode "new" only cases
    the file lacks, mode "add" pools each record with the entry's earlier recordings (see ``pool``). Each file
    is re-read, merged (other entries untouched) and replaced atomically; a file that cannot be read is never
    written and its records come back with status "error". For one case measured twice, the last record wins.
    Every record is validated before any file is touched."""
    if mode not in MODES:
        raise ValueError(f"update mode must be one of {MODES}, got {mode!r}")
    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for record in records:
        entry = entry_from_record(record, date=date, commit=commit, dirty=dirty)
        groups.setdefault((record["hardware"], record["chapter"]), {})[record["key"]] = entry
    changes: list[Change] = []
    for (hardware, chapter), entries in sorted(groups.items()):
        path = path_for(Path(root), hardware, chapter)
        try:
            doc = _read(path, hardware, chapter)
        except ExpectationsError:
            changes += [Change(hardware, chapter, key, "error", None, e["speedup"]) for key, e in entries.items()]
            continue
        doc = doc or {}
        existing: dict[str, dict] = doc.get("entries", {})
        merged = dict(existing)
        for key, entry in entries.items():
            old = existing[key]["speedup"] if key in existing else None
            if old is not None and mode == "new":
                changes.append(Change(hardware, chapter, key, "kept", old, entry["speedup"]))
                continue
            status = "new" if old is None else "updated"
            if old is not None and mode == "add":
                entry = pool(existing[key], entry)
                status = f"pooled ({len(entry['recordings'])})"
            merged[key] = entry
            changes.append(Change(hardware, chapter, key, status, old, entry["speedup"]))
        if merged != existing:
            _write_atomic(path, dumps({**doc, "format": FORMAT, "hardware": hardware, "chapter": chapter,
                                       "entries": merged}))
    return sorted(changes, key=lambda c: (c.hardware, c.chapter, c.key))


def stale(root: Path, hardware: str, known: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(chapter, key)`` of entries whose case no longer exists, for the chapters in ``known`` (collected
    test modules mapped to every case id they declare); other chapters are not examined, because a partial
    run cannot tell whether their cases still exist."""
    unused = []
    for chapter, ids in known.items():
        entries = load(path_for(Path(root), hardware, chapter), hardware=hardware, chapter=chapter)
        unused += [(path_for(Path(root), hardware, chapter), key) for key in entries if key not in ids]
    return sorted(unused)


def git_commit(cwd: Path) -> tuple[str | None, bool | None]:
    """Short HEAD hash and whether the work tree differs from it (untracked files count: they may be
    measured code); ``(None, None)`` outside a git repository, without commits, or without git.
    A checkout without git metadata (a CI artifact, a copied tree) names its commit in ``AIPERF_COMMIT``."""
    if os.environ.get("AIPERF_COMMIT"):
        return os.environ["AIPERF_COMMIT"], None
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=30, check=False)
        if head.returncode != 0:
            return None, None
        status = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True,
                                text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if status.returncode != 0:
        return head.stdout.strip() or None, None
    return head.stdout.strip() or None, bool(status.stdout.strip())
