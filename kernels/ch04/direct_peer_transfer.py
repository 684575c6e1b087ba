"""Direct peer-to-peer transfer: a pipeline stage's activations handed to the next stage through host memory vs
device to device.

- Baseline: the handoff over a CPU control plane, as pipelines built on ``torch.distributed.rpc`` without device
  maps, or on a gloo group, move tensors: the activation copied into pinned host memory (the stream synchronized,
  since gloo reads host memory from its own thread), sent over a gloo group to the next rank while the previous
  rank's arrives, and copied up to the device. The gloo group is created once per process and cached, never per
  call. Bound by the host path: two PCIe crossings and gloo's TCP loopback between processes.
- Optimized: NCCL ``isend`` / ``irecv`` of the device tensor straight to the next rank (``batch_isend_irecv``, both
  handles waited on), over NVLink. Bound by the peer-to-peer bandwidth, ~350 GB/s per direction.

Every rank sends to the next and receives from the previous, the last wrapping around to rank 0 (the steady state
of a pipeline's forward, closed into a ring so that every rank's output, the tensor it received, is checked; ring
attention rotates its K/V blocks the same way).

Shape ``(tokens, hidden)``, bf16. Timing shape (4096, 4096): the hidden states of a Llama-3-8B micro-batch of two
2048-token sequences at a pipeline-stage boundary (33.5 MB).

Napkin math on H200s linked by NVLink/NVSwitch, PCIe gen5 x16 to the host (~50 GB/s each way):
- work: 33.5 MB sent and 33.5 MB received per rank.
- baseline: device to host ~0.7 ms, gloo over TCP loopback (a few GB/s per connection; ~5 GB/s: ~7 ms, the
  largest and least predictable term, set by the host's CPUs and kernel), host to device ~0.7 ms: ~8 ms.
- optimized: 33.5 MB at ~350 GB/s (~0.1 ms) plus ~20-30 us of latency: ~0.12 ms.
- predicted speedup: ~60x on 2 and on 4 H200s (20-150x with the host's TCP loopback speed); every rank's transfer
  uses its own links, so the world size barely matters.

Measured (4x H200 VM, NVLink 4 via NVSwitch, NVLS off, torch 2.11, NCCL 2.28.9; 2026-11-21, commits 11d7741, 316153b
and 0bd6377, three processes): 12.1-17.0 ms -> 277-321 us on 2 ranks (44-53x), 13.9-18.0 ms -> 368-489 us on 4
(36-38x), near the predicted ~60x on 2 ranks. NCCL send/recv reached only 105-121 GB/s per rank on 2 ranks and 69-91
GB/s on 4, a third of the ~350 GB/s assumed (NCCL gives point-to-point few channels; not profiled), so the 4-rank ring
is slower than the 2-rank exchange and the speedup falls with the ranks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from kernels import itemsize, normal
from kernels.ch04.ranks import rank_seeded
from pytest_aiperf import Work

_HOST_GROUPS: dict[int, Any] = {}


def host_group() -> Any:
    """The gloo group for host-staged transfers, created once per process (every rank creates it at its first
    baseline call, in the same order) and cached by world size."""
    world = dist.get_world_size()
    if world not in _HOST_GROUPS:
        _HOST_GROUPS[world] = dist.new_group(backend="gloo")
    return _HOST_GROUPS[world]


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor]:
    """This rank's activation, to be handed to the next rank."""
    return (normal(rank_seeded(seed), shape, dtype, device),)


def baseline_host_staged(activation: torch.Tensor) -> torch.Tensor:
    """Device -> pinned host, gloo send/recv between the processes, host -> device."""
    world, rank = dist.get_world_size(), dist.get_rank()
    pinned = activation.is_cuda
    outgoing = torch.empty(activation.shape, dtype=activation.dtype, pin_memory=pinned)
    arriving = torch.empty(activation.shape, dtype=activation.dtype, pin_memory=pinned)
    outgoing.copy_(activation)  # a blocking copy: gloo's thread reads the host buffer next
    group = host_group()
    sent = dist.isend(outgoing, (rank + 1) % world, group=group)
    received = dist.irecv(arriving, (rank - 1) % world, group=group)
    sent.wait()
    received.wait()
    return arriving.to(activation.device, non_blocking=True)


def optimized_device_to_device(activation: torch.Tensor) -> torch.Tensor:
    """NCCL send to the next rank and receive from the previous, both handles waited on."""
    world, rank = dist.get_world_size(), dist.get_rank()
    arriving = torch.empty_like(activation)
    for handle in dist.batch_isend_irecv([dist.P2POp(dist.isend, activation, (rank + 1) % world),
                                          dist.P2POp(dist.irecv, arriving, (rank - 1) % world)]):
        handle.wait()
    return arriving


def work(shape: tuple[int, ...], dtype: str, *, world: int) -> Work:
    """What each rank sends over the interconnect: its activation, once (and it receives as much)."""
    return Work(bytes=float(itemsize(dtype) * torch.Size(shape).numel()))
