"""Contiguous shard: one ``torch.save`` file per tokenized sample vs one read of consecutive records from a raw shard.

- Baseline: the per-sample format many preprocessing scripts write: each sequence saved with ``torch.save`` as
  ``{"input_ids": tensor}``; the loader ``torch.load``s each file of the batch (open, zip directory, unpickle,
  storage read, close), stacks them, and uploads with a blocking pageable copy. Bound by per-file
  deserialization overhead, not by bytes.
- Optimized: the same sequences as fixed-size raw int64 records in one file, shuffled when the shard was
  written (as streaming dataset formats do), so a batch is a run of consecutive records: one ``seek``, one
  ``readinto`` a preallocated pinned buffer, one ``non_blocking`` upload. Bound by one small sequential read.

Both arms read the same batch of consecutive samples from files in the page cache (see the chapter's note).
The staging buffer is reused across calls behind a fence, so a call never overwrites bytes still being uploaded.

Shape ``(samples, batch, seq_len)``. Timing shape (1024, 64, 2048): a shard of 1024 GPT-style sequences of 2048
int64 token ids (16 KB each) and one batch of 64 consecutive sequences (1 MB).

Napkin math on an H100 host (16-core VM, PCIe gen5):
- work: 64 * 16 KB = 1 MB read and uploaded; the bytes themselves take ~0.1 ms to copy and ~20 us to DMA.
- baseline: 64 * ~100-200 us per torch.load (zip reader, unpickler, file open/close) = ~6-13 ms; stack and
  pageable upload of 1 MB ~0.2 ms: ~6-13 ms.
- optimized: open + seek + one 1 MB read ~0.1-0.2 ms; pinned DMA ~20 us; launch overheads: ~0.2-0.3 ms.
- predicted speedup: ~10 ms / ~0.25 ms = ~40x (20-60x): per-file deserialization, not I/O, is the whole cost.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import seeded
from kernels.ch05 import ScratchDir, UploadFence, host_buffer, readinto_full
from pytest_aiperf import Work


class TokenShard:
    """The same sequences stored twice: one torch.save file per sample, and one file of raw int64 records."""

    def __init__(self, tokens: torch.Tensor, batch: int, device: Any) -> None:
        self.scratch = ScratchDir()
        self.tokens = tokens
        self.paths = [str(self.scratch.path / f"{i:06d}.pt") for i in range(len(tokens))]
        for path, sequence in zip(self.paths, tokens):
            torch.save({"input_ids": sequence.clone()}, path)
        self.shard = str(self.scratch.path / "shard.i64")
        tokens.numpy().tofile(self.shard)
        self.staging = host_buffer((batch, tokens.shape[1]), torch.int64, device)
        self.staging_bytes = memoryview(self.staging.numpy()).cast("B")
        self.fence = UploadFence(device)


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Random GPT-2 token ids (vocabulary 50257) written both ways, a random batch start, and the target device."""
    samples, batch, seq_len = shape
    gen = seeded(seed)
    tokens = torch.randint(0, 50257, (samples, seq_len), generator=gen, dtype=torch.int64)
    start = int(torch.randint(0, samples - batch + 1, (1,), generator=gen))
    return TokenShard(tokens, batch, device), start, torch.device(device)


def baseline_torch_load_per_sample(data: TokenShard, start: int, device: torch.device) -> torch.Tensor:
    """torch.load one file per sample, stack, blocking pageable upload."""
    batch = data.staging.shape[0]
    sequences = [torch.load(data.paths[i], weights_only=True)["input_ids"] for i in range(start, start + batch)]
    return torch.stack(sequences).to(device)


def optimized_contiguous_shard(data: TokenShard, start: int, device: torch.device) -> torch.Tensor:
    """One seek and one readinto of the batch's consecutive records into pinned staging, one non-blocking upload."""
    data.fence.wait()
    with open(data.shard, "rb", buffering=0) as file:
        file.seek(start * data.staging[0].nbytes)
        readinto_full(file, data.staging_bytes)
    batch = data.staging.to(device, non_blocking=True, copy=True)
    data.fence.mark()
    return batch


def reference(data: TokenShard, start: int, device: torch.device) -> torch.Tensor:
    """The source sequences of the batch, without touching any file."""
    return data.tokens[start:start + data.staging.shape[0]]


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The batch's bytes read from the page cache and uploaded once, one item per sample."""
    samples, batch, seq_len = shape
    return Work(bytes=float(8 * batch * seq_len), items=float(batch), item_name="samples")
