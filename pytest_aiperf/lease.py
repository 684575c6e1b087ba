"""One measured case per GPU at a time, across processes: an exclusive advisory lock per GPU, held while a case runs.

Workers pinned one per GPU (``pytest -n auto``) never wait on each other. Workers that share a GPU
(``--aiperf-share-gpus``), or two pytest runs on one machine, take turns instead of timing each other's kernels.
The lock is ``flock`` on a file named by the GPU's UUID in the temporary folder; the kernel drops it when the
holding process dies, so a crashed worker never leaves a GPU locked.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def lock_path(uuid: str, folder: Path | None = None) -> Path:
    """``<tmp>/pytest-aiperf-gpu-<uuid>.lock``: one lock file per physical GPU, shared by every user of the machine."""
    return (folder or Path(tempfile.gettempdir())) / f"pytest-aiperf-gpu-{re.sub(r'[^A-Za-z0-9-]', '_', uuid)}.lock"


@contextmanager
def exclusive(uuid: str | None, folder: Path | None = None) -> Iterator[float]:
    """Hold the GPU named ``uuid`` alone for the block; yields the seconds spent waiting for it. No UUID (no GPU,
    or a host clock backend) or no ``fcntl`` (not POSIX): nothing to lock, yields 0."""
    try:
        import fcntl
    except ImportError:
        fcntl = None  # type: ignore[assignment]
    if not uuid or fcntl is None:
        yield 0.0
        return
    path = lock_path(uuid, folder)
    start = time.perf_counter()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - start
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
