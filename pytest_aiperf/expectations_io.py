"""Expectations files on disk: reading a document, and replacing one under a lock.

A writer holds an exclusive ``flock`` on the folder of the file it updates (the folder of the symlink's target when
the file is a symlink) for its whole read-merge-write, so concurrent writers in other processes merge one after
another instead of losing each other's entries. Locking the folder leaves no lock file behind. The new text goes to
a temporary file of a unique name in that folder, is fsynced and renamed over the file, so a reader sees the old
document or the new one, never part of one; the file keeps its permission bits, and a symlink stays a symlink.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_aiperf.expectations_schema import ExpectationsError, check_document

NEW_FILE_MODE = 0o666  # less the process's umask, as for any file the process creates


def dumps(doc: dict[str, Any]) -> str:
    """The canonical text of a document: sorted keys, indent 2, trailing newline. NaN or Infinity appear only where
    an entry that was read with them is written back as it was."""
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"


def dangling_link(path: Path) -> ExpectationsError | None:
    """The error for ``path`` or its folder being a symlink whose target does not exist, else None."""
    for candidate in (path, path.parent):
        if os.path.islink(candidate) and not os.path.exists(candidate):
            return ExpectationsError(candidate, f"is a symlink to {os.readlink(candidate)!r}, which does not exist")
    return None


def read_document(path: Path, hardware: str | None, chapter: str | None) -> dict[str, Any] | None:
    """The document of ``path`` checked at the document level (``check_document``), or None if there is no file.
    A dangling symlink, an unreadable file or text that is not JSON raise ``ExpectationsError``."""
    dangling = dangling_link(path)
    if dangling is not None:
        raise dangling
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
    return check_document(path, doc, hardware, chapter)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[Path]:
    """Hold the exclusive lock on the folder of the file ``path`` names, creating the folder if needed; yields that
    file's path with every symlink resolved. Raises ``ExpectationsError`` for a dangling symlink and ``OSError``
    where the folder cannot be created, opened or locked. Closing the folder's descriptor releases the lock."""
    dangling = dangling_link(path)
    if dangling is not None:
        raise dangling
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield target
    finally:
        os.close(folder)


def _create_temporary(target: Path) -> tuple[int, Path]:
    """A new hidden file of a unique name beside ``target``, opened for writing: ``(descriptor, path)``."""
    while True:
        temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE), temporary
        except FileExistsError:
            continue


def write_atomic(target: Path, text: str) -> None:
    """Replace the regular file ``target`` (no symlink: pass ``locked``'s path) with ``text``, keeping its permission
    bits; a new file gets ``NEW_FILE_MODE`` less the umask. The folder is then fsynced where the system allows.
    Raises ``OSError`` with the old file left as it was and no temporary file left behind."""
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    descriptor, temporary = _create_temporary(target)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename is made; making it durable is best effort
        folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
