"""Chunked readinto: reading a token file into a fresh array then uploading vs streaming it through pinned memory.

- Baseline: ``np.fromfile`` reads the whole file into a freshly allocated array (above glibc's mmap threshold,
  so every call maps and faults in new pages), then a blocking pageable ``.to(device)`` uploads it through the
  driver's bounce buffers. Read, then copy, then upload, one after the other.
- Optimized: ``readinto`` fills a preallocated pinned buffer chunk by chunk, and each chunk's ``non_blocking``
  upload starts as soon as it is read, so the DMA of chunk i overlaps the read of chunk i+1; only the last
  chunk's upload is exposed. Bound by the read from the page cache.

Both arms then widen the uint16 tokens to int32 on the GPU (the embedding's index type) with the same code.
The staging buffer is as large as the file and reused across calls; a fence keeps a call from overwriting it
while the previous call's uploads may still read it. See the chapter's note on the page cache.

Shape ``(tokens, chunk)``: a file of ``tokens`` uint16 token ids read in chunks of ``chunk`` tokens. Timing shape
(33554432, 2097152): 64 MiB of a GPT-2-tokenized pretraining shard (llm.c's FineWeb shards hold 100 M tokens
as uint16), read in 4 MiB chunks.

Napkin math on an H100 host (16-core VM, PCIe gen5):
- work: 64 MiB read from the page cache and uploaded; the widening writes 128 MiB on the GPU (~60 us).
- baseline: read at ~6-10 GB/s = ~7-11 ms, plus ~16 K page faults on the fresh array (~3-6 ms); pageable
  upload at ~10-20 GB/s = ~3.5-7 ms: ~14-24 ms.
- optimized: read into already-mapped pinned pages ~7-11 ms; each 4 MiB DMA (~85 us at ~50 GB/s) hides behind
  the next chunk's read (~0.5 ms); last chunk + widening ~0.15 ms: ~7-11 ms.
- predicted speedup: ~18 ms / ~9 ms = ~2x (1.5-2.5x).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kernels import seeded
from kernels.ch05 import ScratchDir, UploadFence, host_buffer, readinto_full
from pytest_aiperf import Work


class TokenFile:
    """One file of uint16 tokens, a pinned staging buffer of its size, and the chunk size of the streamed read."""

    def __init__(self, tokens: np.ndarray, chunk: int, device: Any) -> None:
        self.scratch = ScratchDir()
        self.tokens = tokens
        self.path = str(self.scratch.path / "tokens.u16")
        tokens.tofile(self.path)
        self.chunk = chunk
        self.staging = host_buffer((tokens.size,), torch.int16, device)
        self.staging_bytes = memoryview(self.staging.numpy().view(np.uint8))
        self.fence = UploadFence(device)


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Random GPT-2 token ids (vocabulary 50257) written as a uint16 file, and the target device."""
    tokens, chunk = shape
    ids = torch.randint(0, 50257, (tokens,), generator=seeded(seed), dtype=torch.int32).numpy().astype(np.uint16)
    return TokenFile(ids, chunk, device), torch.device(device)


def _widen(tokens: torch.Tensor) -> torch.Tensor:
    """uint16 ids carried as int16 -> int32 ids (sign extension undone by the mask)."""
    return tokens.to(torch.int32).bitwise_and_(0xFFFF)


def baseline_fromfile(data: TokenFile, device: torch.device) -> torch.Tensor:
    """np.fromfile into a fresh array, blocking pageable upload, widen on the device."""
    tokens = np.fromfile(data.path, dtype=np.int16)
    return _widen(torch.from_numpy(tokens).to(device))


def optimized_chunked_readinto(data: TokenFile, device: torch.device) -> torch.Tensor:
    """readinto pinned staging chunk by chunk, each chunk's upload issued as soon as it lands, widen on the device."""
    data.fence.wait()
    count = data.staging.numel()
    tokens = torch.empty(count, dtype=torch.int16, device=device)
    with open(data.path, "rb", buffering=0) as file:
        for start in range(0, count, data.chunk):
            stop = min(start + data.chunk, count)
            readinto_full(file, data.staging_bytes[2 * start:2 * stop])
            tokens[start:stop].copy_(data.staging[start:stop], non_blocking=True)
    data.fence.mark()
    return _widen(tokens)


def reference(data: TokenFile, device: torch.device) -> torch.Tensor:
    """The source token ids as int32, without touching the file."""
    return torch.from_numpy(data.tokens.astype(np.int32))


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The file's bytes, read from the page cache and uploaded once (the bound)."""
    tokens, chunk = shape
    return Work(bytes=float(2 * tokens), items=float(tokens), item_name="tokens")
