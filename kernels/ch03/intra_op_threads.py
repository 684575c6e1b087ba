"""Intra-op threads: CPU-side feature extraction on one thread vs on one thread per physical core the process owns.

- Baseline: Whisper's log-mel front end (STFT, power, mel projection, log, dynamic-range clamp) computed by torch
  on the CPU with one intra-op thread, what ``OMP_NUM_THREADS=1`` leaves a process with (torchrun sets it for
  every worker by default; many container images set it too), then uploaded. Bound by one core.
- Optimized: the same code with ``torch.set_num_threads`` sized to the physical cores in this process's CPU
  affinity (hyperthread siblings share a core's FPUs, so they add little to the GEMM and FFT); the STFT's
  batched FFTs, the mel GEMM and the elementwise ops spread across cores. Bound by the cores' memory bandwidth
  and the serial parts.

Both arms set the thread count for the call and restore the previous value, so neither leaks its setting into
the other; the setting is the only difference. A serving process that owns the host should size its pool to the
cores it may use (fewer when several ranks share a host); nothing here pins threads to cores (see the chapter's
note on what a VM cannot show), and on a VM some vCPUs may be slower or shared.

Shape ``(clips, samples)`` of 16 kHz audio (samples > 200 for the STFT's reflect padding). Timing shape
(2, 480000): one minute of speech as the two 30-second windows Whisper consumes, 80 mel bins x 3000 frames each.

Napkin math on an H100 host (16 vCPUs, ~8 physical cores):
- work: 3.8 MB of audio read, 1.9 MB of features uploaded; ~0.19 GFLOP of mel projection, ~0.1 GFLOP of FFTs.
- baseline (1 thread): STFT framing + FFTs ~5 ms, |X|^2 ~2 ms, mel GEMM at ~50-100 GFLOP/s ~2-4 ms, log and
  clamps ~1-2 ms: ~10-13 ms; pageable upload ~0.2 ms.
- optimized (8 threads): the GEMM and elementwise parts scale ~5-7x (~1.5 ms); the FFTs scale if MKL threads them
  (~1-5 ms): ~3-6 ms.
- predicted speedup: ~11 ms / ~4.5 ms = ~2.5x (1.5-4x, mostly set by how well the STFT parallelizes).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work

RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80


def physical_cores() -> int:
    """Distinct physical cores among the CPUs this process may run on (sysfs topology); the CPU count if unknown."""
    cpus = os.sched_getaffinity(0)
    cores = set()
    for cpu in cpus:
        try:
            cores.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip())
        except OSError:
            return len(cpus)
    return len(cores)


def mel_filters(dtype: torch.dtype) -> torch.Tensor:
    """80 triangular filters evenly spaced on the HTK mel scale from 0 to 8 kHz, over the 201 STFT bins."""
    bins = torch.linspace(0, RATE / 2, N_FFT // 2 + 1, dtype=torch.float64)
    top = 2595 * math.log10(1 + RATE / 2 / 700)
    edges = 700 * (10 ** (torch.linspace(0, top, N_MELS + 2, dtype=torch.float64) / 2595) - 1)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising, falling = (bins - lower) / (center - lower), (upper - bins) / (upper - center)
    return torch.minimum(rising, falling).clamp(min=0).to(dtype)


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Host audio, the Hann window and mel filters (CPU tensors), the thread count to use, and the target device."""
    clips, samples = shape
    audio = normal(seeded(seed), (clips, samples), dtype, "cpu", std=0.1)
    window = torch.hann_window(N_FFT, dtype=audio.dtype)
    return audio, window, mel_filters(audio.dtype), physical_cores(), torch.device(device)


@contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def log_mel(audio: torch.Tensor, window: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Whisper's front end: |STFT|^2 without the last frame, mel projection, log10, clamp to 8 decades, rescale."""
    spectrum = torch.stft(audio, N_FFT, HOP, window=window, return_complex=True)
    power = spectrum[..., :-1].abs() ** 2
    log = torch.clamp(filters @ power, min=1e-10).log10()
    log = torch.maximum(log, log.amax(dim=(-2, -1), keepdim=True) - 8.0)
    return (log + 4.0) / 4.0


def baseline_one_thread(audio: torch.Tensor, window: torch.Tensor, filters: torch.Tensor, threads: int,
                        device: torch.device) -> torch.Tensor:
    """The features on one intra-op thread (OMP_NUM_THREADS=1), then a pageable upload."""
    with intra_op_threads(1):
        return log_mel(audio, window, filters).to(device)


def optimized_sized_threads(audio: torch.Tensor, window: torch.Tensor, filters: torch.Tensor, threads: int,
                            device: torch.device) -> torch.Tensor:
    """The same features with one intra-op thread per physical core of the process's affinity, then the upload."""
    with intra_op_threads(threads):
        return log_mel(audio, window, filters).to(device)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Audio read and features written once; 2 flops per multiply-add of the mel projection (FFTs not counted)."""
    clips, samples = shape
    frames = samples // HOP
    return Work(bytes=float(itemsize(dtype) * clips * (samples + N_MELS * frames)),
                flops=float(2 * clips * frames * N_MELS * (N_FFT // 2 + 1)))
