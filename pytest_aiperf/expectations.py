"""Expectations: golden files of measured speedups, one per chapter per hardware, checked into the repository.

``<root>/<hardware>/<chapter>.json`` holds ``{"format": 1, "hardware", "chapter", "entries": {case id: entry}}``
written with sorted keys and indent 2, so a re-recording reads as a small diff; a case on ``n`` GPUs together is
filed under ``<root>/<n>x_<hardware>/``. Numbers are stored exactly as measured. A file is checked at two levels
(``expectations_schema``): a document that cannot be trusted (corrupt, another format, another hardware's) is an
error that names the file and is never written; a malformed entry is an error that names the file and the entry,
and an update that records its case replaces it. An entry is built from a measured record, or pooled from several
(``expectations_entries``); updates merge under a lock and replace files atomically (``expectations_io``); what
they refuse to record is decided per record (``expectations_rules``).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_aiperf.expectations_entries import MAX_RECORDINGS, entry_from_record, pool, record_problem
from pytest_aiperf.expectations_io import dangling_link, dumps, locked, read_document, write_atomic
from pytest_aiperf.expectations_rules import margin_refusal, pool_refusal, record_refusal
from pytest_aiperf.expectations_schema import FORMAT, MAX_MARGIN, ExpectationsError, entry_problem

__all__ = ["FORMAT", "MAX_MARGIN", "MAX_RECORDINGS", "MODES", "Change", "ExpectationsError", "Store",
           "apply_updates", "dumps", "entry_from_record", "git_commit", "load", "path_for", "pool", "stale"]

MODES = ("all", "new", "add")


def path_for(root: Path, hardware: str, chapter: str) -> Path:
    """``root/hardware/chapter.json``; both names must be plain file names (no separators, not ``..``)."""
    for label, name in (("hardware", hardware), ("chapter", chapter)):
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{label} {name!r} cannot name an expectations file")
    return Path(root) / hardware / f"{chapter}.json"


def _entries(path: Path, hardware: str | None, chapter: str | None, *, lenient: bool) -> dict[str, dict]:
    doc = read_document(Path(path), hardware, chapter)
    entries: dict[str, dict] = {} if doc is None else doc["entries"]
    valid = {}
    for key, entry in entries.items():
        problem = entry_problem(entry)
        if problem is None:
            valid[key] = entry
        elif not lenient:
            raise ExpectationsError(Path(path), problem, key)
    return valid


def load(path: Path, *, hardware: str | None = None, chapter: str | None = None) -> dict[str, dict]:
    """The entries of one file (``{}`` if it does not exist). ``hardware``/``chapter``, when given, are what
    the file's path says; a ``hardware``/``chapter`` field that disagrees is an error, and so is a malformed entry."""
    return _entries(Path(path), hardware, chapter, lenient=False)


class Store:
    """The read side for one session: the expectations of one hardware, loaded once per chapter. A lenient store
    (for a session that updates expectations) passes over malformed entries, so that their cases measure against
    their floor and are recorded afresh; a document that cannot be read is an error either way."""

    def __init__(self, root: Path, hardware: str, *, lenient: bool = False) -> None:
        self.root = Path(root)
        self.hardware = hardware
        self.lenient = lenient
        self._chapters: dict[str, dict[str, dict]] = {}

    def preload(self) -> None:
        """Load every file of this hardware now, so a corrupt one stops the session before any test runs."""
        folder = self.root / self.hardware
        dangling = dangling_link(folder)
        if dangling is not None:
            raise dangling
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.json")):
            self._chapters[path.stem] = _entries(path, self.hardware, path.stem, lenient=self.lenient)

    def get(self, chapter: str, key: str) -> dict | None:
        """A copy of the recorded entry of case ``key`` in ``chapter``, or None if none is recorded (or, in a lenient
        store, if its entry is malformed)."""
        if chapter not in self._chapters:
            path = path_for(self.root, self.hardware, chapter)
            self._chapters[chapter] = _entries(path, self.hardware, chapter, lenient=self.lenient)
        entry = self._chapters[chapter].get(key)
        return None if entry is None else copy.deepcopy(entry)


@dataclass(frozen=True)
class Change:
    """What an update did to one entry; ``old``/``new`` are speedups and ``old_margin``/``new_margin`` noise margins
    (``old*``: the recorded entry's, None without a valid one; ``new*``: what was measured or pooled). ``status``:

    - "new", "updated" (mode "all"), "pooled (N)" (mode "add": N recordings now make the entry, ``new`` is their
      median): written;
    - "repaired": the case's entry was malformed and was replaced by this recording (in every mode; ``detail`` says
      what was wrong);
    - "kept": mode "new" and already recorded; nothing written;
    - "refused": a rule forbids recording it (``expectations_rules``; ``detail`` says which); nothing written;
    - "error": the file could not be read or written (``detail`` says why); the file is as it was.
    """

    hardware: str
    chapter: str
    key: str
    status: str
    old: float | None
    new: float | None
    old_margin: float | None = None
    new_margin: float | None = None
    detail: str = ""


Planned = dict[str, tuple[dict, dict | None, str | None]]  # key -> (record, its entry, why it is refused)


def _merge(existing: dict[str, Any], key: str, planned: tuple[dict, dict | None, str | None], mode: str,
           where: tuple[str, str]) -> tuple[Change, dict | None]:
    """The change for one case and the entry to write for it (None: nothing)."""
    record, entry, refusal = planned
    problem = entry_problem(existing[key]) if key in existing else None
    old = existing[key] if key in existing and problem is None else None
    before = (None, None) if old is None else (old["speedup"], old["noise_margin"])

    def change(status: str, after: dict, detail: str = "") -> Change:
        return Change(*where, key, status, before[0], after["speedup"], before[1], after["noise_margin"], detail)

    if entry is None:
        return change("refused", record, refusal or ""), None
    if problem is not None:
        return change("repaired", entry, f"replaced the malformed entry, which {problem}"), entry
    if old is None:
        return change("new", entry), entry
    if mode == "new":
        return change("kept", record), None
    if mode == "all":
        return change("updated", entry), entry
    refusal = pool_refusal(old, record)
    if refusal is not None:
        return change("refused", record, refusal), None
    pooled = pool(old, entry)
    refusal = margin_refusal(pooled)
    if refusal is not None:
        return change("refused", pooled, refusal), None
    return change(f"pooled ({len(pooled['recordings'])})", pooled), pooled


def _update_file(path: Path, where: tuple[str, str], cases: Planned, mode: str) -> list[Change]:
    """Merge one file's cases under its lock. A file that cannot be read or written turns its cases into "error"
    (those a rule refused stay "refused"); a file whose every case is refused is only read, never locked or created."""
    hardware, chapter = where

    def failed(detail: str) -> list[Change]:
        return [Change(hardware, chapter, key, "refused" if refusal else "error", None, record["speedup"], None,
                       record["noise_margin"], refusal or detail) for key, (record, _, refusal) in cases.items()]

    try:
        if all(refusal is not None for _, _, refusal in cases.values()):
            doc = read_document(path, hardware, chapter) or {}
            return [_merge(doc.get("entries", {}), key, planned, mode, where)[0] for key, planned in cases.items()]
        with locked(path) as target:
            doc = read_document(path, hardware, chapter) or {}
            merged = dict(doc.get("entries", {}))
            changes, written = [], False
            for key, planned in cases.items():
                change, entry = _merge(merged, key, planned, mode, where)
                changes.append(change)
                if entry is not None:
                    merged[key], written = entry, True
            if written:
                write_atomic(target, dumps({**doc, "format": FORMAT, "hardware": hardware, "chapter": chapter,
                                            "entries": merged}))
    except ExpectationsError as exc:
        return failed(str(exc))
    except OSError as exc:
        return failed(f"{path}: not written ({exc})")
    return changes


def apply_updates(root: Path, records: list[dict], *, mode: str, date: str, commit: str | None,
                  dirty: bool | None) -> list[Change]:
    """Record measured cases into their files: mode "all" (re)records every record, mode "new" only cases
    the file lacks, mode "add" pools each record with the entry's earlier recordings (see ``pool``). In every mode
    a malformed entry of a recorded case is replaced ("repaired"), other entries are left as they were, and a
    record that a rule forbids (``expectations_rules``) is "refused". Each file is read, merged and replaced under
    its lock (``expectations_io``), so concurrent updates lose nothing. For one case measured twice, the last record
    wins. Every record is checked before any file is touched: an invalid argument (an unknown mode, a record that is
    not a measured record) raises ValueError; a file that cannot be read or written never raises, its records come
    back with status "error"."""
    if mode not in MODES:
        raise ValueError(f"update mode must be one of {MODES}, got {mode!r}")
    files: dict[tuple[str, str], Planned] = {}
    for record in records:
        problem = record_problem(record)
        if problem is not None:
            raise ValueError(f"{record.get('key')}: {problem}")
        path_for(Path(root), record["hardware"], record["chapter"])
        refusal = record_refusal(record)
        entry = None if refusal else entry_from_record(record, date=date, commit=commit, dirty=dirty)
        files.setdefault((record["hardware"], record["chapter"]), {})[record["key"]] = (record, entry, refusal)
    changes: list[Change] = []
    for where, cases in sorted(files.items()):
        changes += _update_file(path_for(Path(root), *where), where, cases, mode)
    return sorted(changes, key=lambda c: (c.hardware, c.chapter, c.key))


def stale(root: Path, hardware: str, known: dict[str, set[str]]) -> list[tuple[Path, str]]:
    """``(file, key)`` of entries whose case no longer exists, in ``<root>/<hardware>/`` and every
    ``<root>/<n>x_<hardware>/`` (cases on n GPUs), for the chapters in ``known`` (collected test modules mapped to
    every case id they declare); other chapters are not examined, because a partial run cannot tell whether their
    cases still exist. A file whose document cannot be read raises ``ExpectationsError``; a malformed entry is
    listed like any other."""
    root = Path(root)
    together = re.compile(rf"[0-9]+x_{re.escape(hardware)}")
    folders = [hardware]
    if root.is_dir():
        folders += sorted(p.name for p in root.iterdir() if together.fullmatch(p.name))
    unused = []
    for folder in folders:
        for chapter, ids in known.items():
            path = path_for(root, folder, chapter)
            doc = read_document(path, folder, chapter) or {"entries": {}}
            unused += [(path, key) for key in doc["entries"] if key not in ids]
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


def validate(root: Path, hardware: str, chapters: set[str], *, lenient: bool = False) -> None:
    """Read the files of ``chapters`` for ``hardware`` and every ``<n>x_<hardware>``, raising ``ExpectationsError``
    for one that cannot be used (``lenient``: malformed entries are allowed, since an update replaces them)."""
    root = Path(root)
    if not root.is_dir():
        return
    for folder in [hardware, *sorted(p.name for p in root.glob(f"*x_{hardware}") if p.is_dir())]:
        store = Store(root, folder, lenient=lenient)
        for chapter in sorted(chapters):
            store.get(chapter, "")
