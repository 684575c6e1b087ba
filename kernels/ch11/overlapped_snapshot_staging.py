"""Overlapped snapshot staging: a checkpoint's device-to-host copy then the next forward vs both at once on two streams.

- Baseline: at a step boundary, stage the weights for an asynchronous checkpoint (``non_blocking`` D2H copies into a
  pinned host snapshot), then run the next forward, all on torch's current stream. The host is not blocked, but the
  stream runs the copies before the GEMMs: the SMs idle during the copies and the copy engine during the forward.
- Optimized: the copies on a staging stream that first waits on the current stream, the forward on the current
  stream at the same time, and the current stream waits on the staging stream before returning (the snapshot must
  be complete before the next optimizer step may overwrite the weights, which the join guarantees). The D2H engine
  and the SMs work at once; its 50 GB/s of HBM reads barely touch the GEMMs. Bound by the longer of the two.

This is the staging phase of ``torch.distributed.checkpoint.async_save`` with its ``DefaultStager`` (``StagingOptions``:
pinned memory, async staging, non-blocking copies): the state dict is copied into pinned host memory on the stager's
own stream while training goes on, then written to storage from there in the background. Both arms return the
forward's output and the host snapshot; the snapshot buffer is an input (pinned, allocated once, as a stager reuses
it), so neither arm pays for pinning.

Shape ``(tokens, hidden, ffn)``, bf16. The forward is a SwiGLU MLP (gate and up projections fused into one
``2*ffn x hidden`` weight, SiLU * up, down projection), the snapshot is that MLP's weights. Timing shape
(16384, 4096, 14336): one Llama-3-8B MLP (3 * 4096 * 14336 = 176 M weights, 352 MB in bf16) over a 16384-token
batch (8 sequences of 2048).

Napkin math on an H100 SXM on a PCIe gen5 x16 host link:
- work: 352 MB over PCIe; 6 * 16384 * 4096 * 14336 = 5.77 TFLOP.
- staging: 352 MB at ~50 GB/s = ~7.0 ms. Forward: 5.77 TFLOP at ~650 TFLOP/s = ~8.9 ms, plus SiLU * up over
  16384 x 14336 (470 MB per tensor: SiLU reads gate and writes a temporary, the multiply reads that and up and
  writes its output: 5 x 470 MB = 2.35 GB, ~0.8 ms): ~9.7 ms.
- baseline: ~7.0 + ~9.7 = ~16.7 ms. Optimized: ~max(7.0, 9.7) + a few us of events = ~9.7 ms.
- predicted speedup: ~1.7x (1.5-1.8x); the ceiling is 2x when staging and forward take equal time.

Measured (H100 VM, 2026-11-21, three processes at commits c0a8b42, 401dac0, 6242554): 15.0-15.5 ms vs 8.75-8.95 ms,
1.71-1.73x, as predicted; both arms ran a little under their ~16.7 and ~9.7 ms estimates.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """The batch, the MLP's fused gate/up and down weights, a pinned host snapshot buffer and a staging stream."""
    tokens, hidden, ffn = shape
    gen = seeded(seed)
    x = normal(gen, (tokens, hidden), dtype, device)
    gate_up = normal(gen, (2 * ffn, hidden), dtype, device, std=hidden**-0.5)
    down = normal(gen, (hidden, ffn), dtype, device, std=ffn**-0.5)
    snapshot = torch.empty(gate_up.numel() + down.numel(), dtype=gate_up.dtype, pin_memory=True)
    return x, gate_up, down, snapshot, torch.cuda.Stream(device=device)


def _mlp(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    gate, up = F.linear(x, gate_up).chunk(2, dim=-1)
    return F.linear(F.silu(gate) * up, down)


def _stage(gate_up: torch.Tensor, down: torch.Tensor, snapshot: torch.Tensor) -> None:
    """Both weights, flattened, into the pinned snapshot: two async D2H copies on the current stream."""
    snapshot[:gate_up.numel()].copy_(gate_up.reshape(-1), non_blocking=True)
    snapshot[gate_up.numel():].copy_(down.reshape(-1), non_blocking=True)


def baseline_stage_then_forward(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor, snapshot: torch.Tensor,
                                staging: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The snapshot copies, then the forward, on one stream."""
    _stage(gate_up, down, snapshot)
    return _mlp(x, gate_up, down), snapshot


def optimized_stage_beside_forward(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor, snapshot: torch.Tensor,
                                   staging: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The snapshot copies on the staging stream while the forward runs on the current one; joined before return."""
    compute = torch.cuda.current_stream(x.device)
    staging.wait_stream(compute)
    with torch.cuda.stream(staging):
        _stage(gate_up, down, snapshot)
    y = _mlp(x, gate_up, down)
    compute.wait_stream(staging)
    return y, snapshot


def reference(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor, snapshot: torch.Tensor,
              staging: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The MLP in float64 and the weights themselves, flattened, on the host."""
    y = _mlp(x.double(), gate_up.double(), down.double())
    return y, torch.cat([gate_up.reshape(-1), down.reshape(-1)]).cpu()


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The weights cross PCIe once (the staging's bound); 2 flops per multiply-add of the three projections."""
    tokens, hidden, ffn = shape
    return Work(bytes=float(itemsize(dtype) * 3 * hidden * ffn), flops=float(6 * tokens * hidden * ffn))
