"""Peer copy: a tensor moved from GPU 0 to GPU 1 in one process, staged through pinned host memory vs one
peer-to-peer copy over NVLink.

- Baseline: without peer access, the bytes go down to the host and back up: chunks DMA'd from GPU 0 into two
  reused pinned slots while GPU 1 DMAs the previous chunk up, the two PCIe hops overlapped and ordered by CUDA
  events alone (what the driver itself does for ``cudaMemcpyPeer`` when peer access is unavailable). Bound by
  PCIe gen5 x16, one direction on each GPU's link.
- Optimized: ``out.copy_(src)`` across devices: one copy-engine transfer straight from GPU 0's HBM to GPU 1's over
  NVLink/NVSwitch (torch enables peer access once). Bound by the NVLink bandwidth, ~7x the PCIe rate.

Both arms return a fresh tensor on GPU 1 (from torch's caching allocator) and leave the copy ordered on GPU 0's
current stream. The pinned staging (two 16 MiB slots) is made in ``inputs``, as a loader preallocates it.

Shape: any tensor shape. Timing shape (32, 2, 4096, 1024) bf16: the KV cache of a 4096-token Llama-3-8B prompt
(32 layers, K and V, 8 KV heads x 128; 128 KiB per token, 537 MB), handed by a prefill GPU to a decode GPU in
disaggregated serving.

Napkin math on 2 H200s (NVLink 4 through NVSwitch, PCIe gen5 x16 to the host):
- work: 537 MB across the link once.
- baseline: both hops at ~50-55 GB/s pinned (53-55 GB/s measured for pinned H2D on these VMs), overlapped, so
  ~9.8-10.7 ms plus one chunk of pipeline fill (~0.3 ms): ~10-11 ms.
- optimized: 18 links x 25 GB/s = 450 GB/s per direction nominal; the copy engines reach ~70-85% of it (an
  estimate, not measured here): ~315-380 GB/s = ~1.4-1.7 ms.
- predicted speedup: ~6-8x (the NVLink-to-PCIe rate ratio; the chunking costs the baseline a few percent).

Measured (4x H200 VM, NVLink 4 via NVSwitch, torch 2.11; 2026-11-21, commits 316153b and 0bd6377, two processes): 10.3
ms -> 1.36 ms, 7.56-7.58x, within the predicted ~6-8x: the peer copy moved 393-394 GB/s (87% of the 450 GB/s nominal
per direction), the staged copy ~52 GB/s.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work

CHUNK = 16 << 20  # 16 MiB: ~0.3 ms per hop at PCIe rate, so per-copy overhead and pipeline fill stay at a few %


def inputs(shape: tuple[int, ...], dtype: str, seed: int,
           device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.device]:
    """The source on ``device`` (cuda:0), a pinned staging buffer of two CHUNK-byte slots, and the peer cuda:1.

    The staging is scratch that the baseline overwrites; as bytes (2^25 elements) it is larger than the inputs
    that the checks clone to detect modified inputs.
    """
    src = normal(seeded(seed), shape, dtype, device)
    staging = torch.empty((2, CHUNK), dtype=torch.uint8, pin_memory=True)
    return src, staging, torch.device("cuda", 1)


def _as_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.uint8)


def baseline_host_staged(src: torch.Tensor, staging: torch.Tensor, peer: torch.device) -> torch.Tensor:
    """Chunked D2H on cuda:0's stream and H2D on cuda:1's, double-buffered through the pinned slots.

    Chunk i's H2D waits on an event recorded after its D2H, hence after all earlier work on cuda:0's stream (so
    cuda:1 needs no separate wait at the start); the D2H that refills a slot waits on the H2D that last read it;
    cuda:0's stream finally waits on the last H2D. ``out`` is allocated and written on cuda:1's current stream.
    """
    out = torch.empty(src.shape, dtype=src.dtype, device=peer)
    source, dest = _as_bytes(src), _as_bytes(out)
    here, there = torch.cuda.current_stream(src.device), torch.cuda.current_stream(peer)
    drained: list[torch.cuda.Event] = []
    for step, lo in enumerate(range(0, source.numel(), CHUNK)):
        hi = min(lo + CHUNK, source.numel())
        slot = staging[step % 2, : hi - lo]
        if step >= 2:
            here.wait_event(drained[step - 2])
        slot.copy_(source[lo:hi], non_blocking=True)
        there.wait_event(here.record_event())
        dest[lo:hi].copy_(slot, non_blocking=True)
        drained.append(there.record_event())
    if drained:
        here.wait_event(drained[-1])
    return out


def optimized_peer_copy(src: torch.Tensor, staging: torch.Tensor, peer: torch.device) -> torch.Tensor:
    """One device-to-device copy over NVLink.

    What torch does (aten/src/ATen/native/cuda/Copy.cu, ``copy_kernel_cuda`` and ``copy_device_to_device``): it
    enables peer access once (``at::cuda::get_p2p_access``), makes the source device's current stream (cuda:0's)
    wait on an event recorded on cuda:1's current stream, issues the copy on cuda:0's current stream through
    ``CUDACachingAllocator::memcpyAsync`` (c10/cuda/CUDACachingAllocator.cpp: ``cudaMemcpyAsync`` device to device
    when peer access is on, ``cudaMemcpyPeerAsync`` only without it and with expandable segments), then makes
    cuda:1's current stream wait on an event recorded after the copy. ``non_blocking`` changes nothing between
    devices. The copy is on cuda:0's current stream, so it is joined there without a further event.
    """
    out = torch.empty(src.shape, dtype=src.dtype, device=peer)
    out.copy_(src, non_blocking=True)
    return out


def reference(src: torch.Tensor, staging: torch.Tensor, peer: torch.device) -> torch.Tensor:
    """The source values in float64 (upcast by the checks), on the peer, where the outputs are compared."""
    return src.to(peer)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The bytes that cross the GPU-to-GPU path: every element once."""
    return Work(bytes=float(itemsize(dtype) * torch.Size(shape).numel()))
