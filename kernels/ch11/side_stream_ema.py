"""Side-stream EMA: the weights' moving average updated before the next forward vs on a side stream beside it.

- Baseline: after the optimizer step, the exponential moving average of the fp32 master weights is updated with
  ``torch._foreach_lerp`` (timm's and NeMo's EMA), then the next forward runs, all on torch's current stream. The
  EMA is HBM-bound (read master and average, write the new average), the forward bound by the tensor cores; one
  waits for the other.
- Optimized: the same ``_foreach_lerp`` on a side stream that first waits on the current stream, the forward on the
  current stream at the same time, and the current stream waits on the side stream before returning. The new
  averages, allocated on the side stream, are marked used by the current stream (``record_stream``), so the
  allocator does not hand their memory to the side stream again while the caller still reads them. The EMA's
  blocks can run only where the GEMMs leave an SM room: a Hopper cuBLAS GEMM holds most of each SM's shared memory
  and registers, so the overlap is partial: in wave tails, between GEMMs and beside the SiLU * up kernel.

Both arms return the forward's output and the two new averages. Shape ``(tokens, hidden, ffn)``: a SwiGLU MLP (gate
and up projections fused in one ``2*ffn x hidden`` bf16 weight, then the down projection) with fp32 master weights
and fp32 averages, as in mixed-precision training. Timing shape (4096, 4096, 14336): one Llama-3-8B MLP (176 M
weights) over a 4096-token micro-batch (2 sequences of 2048).

Napkin math on an H100 SXM:
- EMA: 176 M x (4 B master + 4 B average read, 4 B written) = 2.11 GB at ~3.0 TB/s = ~0.7 ms.
- forward: 6 x 4096 x 4096 x 14336 = 1.44 TFLOP at ~650 TFLOP/s = ~2.2 ms, plus SiLU * up over 4096 x 14336
  (235 MB read, 117 MB written: ~0.12 ms): ~2.3 ms.
- baseline: ~0.7 + ~2.3 = ~3.0 ms.
- optimized: perfect overlap would give ~2.3 ms (1.3x); with the GEMMs holding the SMs, perhaps a third to a
  half of the EMA hides: ~2.65-2.8 ms.
- predicted speedup: ~1.1x (1.05-1.15x): modest, because compute-bound GEMMs leave a memory-bound side task
  few SMs; overlap pays far more beside copies (``overlapped_snapshot_staging``), which need no SMs.

Measured (H100 VM, 2026-11-21, three processes at commit a734607, and a fourth gating): 3.04, 2.93, 2.99 and 2.97
ms vs 2.97, 2.94, 2.96 and 2.91 ms: 1.02x, 1.00x, 1.01x and 1.02x, a tie, below the predicted ~1.1x. The baseline
is at its ~3.0 ms estimate; the side stream hid ~0.03-0.07 ms (derived) of the ~0.7 ms EMA, not a third to a half:
the GEMMs, which take most of the step, left the EMA's blocks almost no SM to run on. Kept as a measured tie.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from pytest_aiperf import Work

DECAY = 0.999


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """The batch, the bf16 weights used by the forward, their fp32 masters, the fp32 averages and a side stream."""
    tokens, hidden, ffn = shape
    gen = seeded(seed)
    x = normal(gen, (tokens, hidden), dtype, device)
    master_gate_up = normal(gen, (2 * ffn, hidden), "fp32", device, std=hidden**-0.5)
    master_down = normal(gen, (hidden, ffn), "fp32", device, std=ffn**-0.5)
    ema_gate_up = master_gate_up + normal(gen, (2 * ffn, hidden), "fp32", device, std=1e-3 * hidden**-0.5)
    ema_down = master_down + normal(gen, (hidden, ffn), "fp32", device, std=1e-3 * ffn**-0.5)
    gate_up, down = (w.to(x.dtype) for w in (master_gate_up, master_down))
    stream = torch.cuda.Stream(device=device) if torch.device(device).type == "cuda" else None
    return x, gate_up, down, master_gate_up, master_down, ema_gate_up, ema_down, stream


def _forward(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    gate, up = F.linear(x, gate_up).chunk(2, dim=-1)
    return F.linear(F.silu(gate) * up, down)


def _averaged(masters: list[torch.Tensor], averages: list[torch.Tensor]) -> list[torch.Tensor]:
    """New averages: ``average + (1 - DECAY) * (master - average)``, one fused multi-tensor kernel."""
    return torch._foreach_lerp(averages, masters, 1.0 - DECAY)


def baseline_ema_then_forward(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor,
                              master_gate_up: torch.Tensor, master_down: torch.Tensor, ema_gate_up: torch.Tensor,
                              ema_down: torch.Tensor, stream: Any) -> tuple[torch.Tensor, ...]:
    """The EMA update, then the forward, on one stream."""
    averages = _averaged([master_gate_up, master_down], [ema_gate_up, ema_down])
    return (_forward(x, gate_up, down), *averages)


def optimized_ema_on_side_stream(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor,
                                 master_gate_up: torch.Tensor, master_down: torch.Tensor, ema_gate_up: torch.Tensor,
                                 ema_down: torch.Tensor, stream: Any) -> tuple[torch.Tensor, ...]:
    """The EMA update on the side stream while the forward runs on the current one; joined before return."""
    compute = torch.cuda.current_stream(x.device)
    stream.wait_stream(compute)
    with torch.cuda.stream(stream):
        averages = _averaged([master_gate_up, master_down], [ema_gate_up, ema_down])
    for average in averages:
        average.record_stream(compute)
    y = _forward(x, gate_up, down)
    compute.wait_stream(stream)
    return (y, *averages)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The forward reads x and the bf16 weights and writes y; the EMA reads masters and averages and writes new
    averages; 2 flops per multiply-add of the three projections (the EMA's 3 flops per weight are negligible)."""
    tokens, hidden, ffn = shape
    weights = 3 * hidden * ffn
    forward_bytes = itemsize(dtype) * (2 * tokens * hidden + weights)
    return Work(bytes=float(forward_bytes + 3 * 4 * weights), flops=float(6 * tokens * hidden * ffn))
