"""Chapter 5, storage and I/O: file layout, the read path, where decoding runs, and pinned uploads.

Every case reads real files that its ``inputs`` writes into a fresh temporary folder (removed when the inputs are
collected, or at exit). After the first read the page cache serves those files, so the cases measure the software
path from the page cache to the GPU: what a dataset that fits in host RAM sees on every epoch after the first.
Dropping the page cache needs root on the host and is not done; both arms of a case read the same cached bytes,
so they stand on equal footing. Cold-storage numbers (NVMe, network file systems) are out of scope.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch


class ScratchDir:
    """A temporary folder for one call of ``inputs``; removed when this object is collected or at interpreter exit."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="aiperf-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.path), ignore_errors=True)


class UploadFence:
    """Guards a reused host staging buffer: a writer waits until the last upload that read it has finished.

    On a CUDA device this is one event recorded after the asynchronous copies out of the buffer; on the CPU
    copies are synchronous and the fence does nothing.
    """

    def __init__(self, device: Any) -> None:
        self.event = torch.cuda.Event() if torch.device(device).type == "cuda" else None

    def wait(self) -> None:
        if self.event is not None:
            self.event.synchronize()

    def mark(self) -> None:
        if self.event is not None:
            self.event.record()


def host_buffer(shape: tuple[int, ...], dtype: torch.dtype, device: Any) -> torch.Tensor:
    """A preallocated host buffer: page-locked when the data goes to a CUDA device, so uploads from it are DMA."""
    return torch.empty(shape, dtype=dtype, pin_memory=torch.device(device).type == "cuda")


def readinto_full(file: Any, view: memoryview) -> None:
    """Fill ``view`` from ``file``: ``readinto`` on a raw file may return fewer bytes than asked."""
    filled = 0
    while filled < len(view):
        got = file.readinto(view[filled:])
        if not got:
            raise EOFError(f"{file.name}: file ended after {filled} of {len(view)} bytes")
        filled += got
