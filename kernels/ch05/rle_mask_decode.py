"""RLE mask decode: expanding run-length-encoded masks on the CPU vs uploading the runs and expanding on the GPU.

- Baseline: the masks arrive run-length encoded, as COCO stores them; the loader expands them on the CPU with
  vectorized NumPy (``np.repeat`` of each run's 0/1 value by its length, the same work pycocotools' C decoder
  does) and uploads the dense masks with a blocking pageable copy. Bound by the CPU writing the dense bytes
  and by PCIe moving them.
- Optimized: upload only the run lengths (~1% of the dense bytes) and expand on the GPU with the same
  arithmetic in torch (``repeat_interleave`` with ``output_size``, so nothing synchronizes). Bound by a few
  small launches; the dense bytes are written only by the GPU, into HBM.

The encoding is COCO's uncompressed RLE in row-major order: per mask, alternating run lengths of 0s and 1s
starting with a (possibly empty) run of 0s. Masks are 0/1 ``int8`` and compared exactly.

Shape ``(masks, height, width)``. Timing shape (128, 480, 640): instance masks of a Mask R-CNN training batch,
16 COCO images at 640x480 with 8 instances each; 39.3 MB dense, ~0.3 MB of runs.

Napkin math on an H100 host (16-core VM, PCIe gen5):
- work: 39.3 MB of dense masks produced on the device; ~0.3 MB of run lengths read.
- baseline: np.repeat writes 39.3 MB at ~10 GB/s = ~4 ms, into a fresh allocation above glibc's mmap threshold
  (~9.6 K page faults, ~2-5 ms); pageable upload at ~10-20 GB/s = ~2-4 ms: ~8-13 ms.
- optimized: a ~0.3 MB pageable upload (~30 us); ~8 launches (~40 us); repeat_interleave builds a 39.3 M-entry
  int64 index (315 MB) and gathers through it: ~0.7 GB of HBM traffic at ~3.0 TB/s = ~0.25 ms. ~0.3-0.4 ms.
- predicted speedup: ~10 ms / ~0.35 ms = ~30x (15-40x); the baseline is dominated by bytes the optimized arm
  never creates on the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kernels import seeded
from pytest_aiperf import Work


def _ellipses(gen: torch.Generator, masks: int, height: int, width: int) -> torch.Tensor:
    """Filled ellipses at random centers (some off the frame) and sizes; the first mask is empty, the last full."""
    cy = (torch.rand(masks, 1, 1, generator=gen) * 1.4 - 0.2) * height
    cx = (torch.rand(masks, 1, 1, generator=gen) * 1.4 - 0.2) * width
    ay = (torch.rand(masks, 1, 1, generator=gen) * 0.5 + 0.05) * height
    ax = (torch.rand(masks, 1, 1, generator=gen) * 0.5 + 0.05) * width
    ys = torch.arange(height, dtype=torch.float32).view(1, height, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, width)
    dense = (((ys - cy) / ay) ** 2 + ((xs - cx) / ax) ** 2 <= 1.0).to(torch.int8)
    if masks > 1:
        dense[0] = 0
        dense[-1] = 1
    return dense


def _encode(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-major RLE per mask: run lengths alternating 0s and 1s, starting with 0s; and the run count per mask."""
    counts, runs = [], []
    for mask in dense.reshape(len(dense), -1):
        edges = np.flatnonzero(np.diff(mask)) + 1
        lengths = np.diff(np.concatenate(([0], edges, [mask.size])))
        if mask[0] == 1:
            lengths = np.concatenate(([0], lengths))
        counts.append(lengths)
        runs.append(len(lengths))
    return np.concatenate(counts).astype(np.int32), np.asarray(runs, dtype=np.int32)


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Run lengths and runs per mask as host tensors (the encoded data a loader holds), the mask size, the device."""
    masks, height, width = shape
    counts, runs = _encode(_ellipses(seeded(seed), masks, height, width).numpy())
    return torch.from_numpy(counts), torch.from_numpy(runs), (height, width), torch.device(device)


def baseline_cpu_decode(counts: torch.Tensor, runs: torch.Tensor, size: tuple[int, int],
                        device: torch.device) -> torch.Tensor:
    """Vectorized NumPy expansion of every run into dense 0/1 bytes, then a blocking pageable upload."""
    lengths, per_mask = counts.numpy(), runs.numpy()
    first_run = np.cumsum(per_mask) - per_mask
    values = ((np.arange(lengths.size) - np.repeat(first_run, per_mask)) & 1).astype(np.int8)
    dense = np.repeat(values, lengths)
    return torch.from_numpy(dense).view(len(per_mask), *size).to(device)


def optimized_gpu_decode(counts: torch.Tensor, runs: torch.Tensor, size: tuple[int, int],
                         device: torch.device) -> torch.Tensor:
    """Upload the run lengths; the same expansion in torch on the device, sizes known up front (no sync)."""
    lengths, per_mask = counts.to(device), runs.to(device)
    masks, total_runs = runs.numel(), counts.numel()
    first_run = torch.cumsum(per_mask, 0) - per_mask
    run_ids = torch.arange(total_runs, device=device)
    values = ((run_ids - torch.repeat_interleave(first_run, per_mask, output_size=total_runs)) & 1).to(torch.int8)
    dense = torch.repeat_interleave(values, lengths, output_size=masks * size[0] * size[1])
    return dense.view(masks, *size)


def reference(counts: torch.Tensor, runs: torch.Tensor, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """A plain run-by-run decoder, written independently of both arms: fill each run of 1s in a zeroed mask."""
    dense = np.zeros((runs.numel(), size[0] * size[1]), dtype=np.int8)
    lengths = iter(counts.tolist())
    for mask, run_count in zip(dense, runs.tolist()):
        position = 0
        for run in range(run_count):
            length = next(lengths)
            if run % 2:
                mask[position:position + length] = 1
            position += length
    return torch.from_numpy(dense).view(runs.numel(), *size)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The dense mask bytes the decode must produce (the run lengths are ~1% of it), one item per mask."""
    masks, height, width = shape
    return Work(bytes=float(masks * height * width), items=float(masks), item_name="masks")
