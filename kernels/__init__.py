"""Baseline and optimized implementations, one package per chapter, one module per technique.

The helpers here turn a case's dtype name and seed into fresh, deterministic tensors, so every
``inputs`` function in every chapter draws its data the same way: on the CPU from a seeded generator,
then moved to the device (identical values on CPU and GPU for a given seed).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

_TORCH_DTYPES = {
    "fp64": torch.float64,
    "fp32": torch.float32,
    "tf32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def torch_dtype(name: str) -> torch.dtype:
    """The storage dtype of a case dtype name ("tf32" stores fp32; TF32 is a matmul mode, not a format)."""
    try:
        return _TORCH_DTYPES[name]
    except KeyError:
        raise ValueError(f"no floating storage dtype for {name!r}; known: {', '.join(_TORCH_DTYPES)}") from None


def seeded(seed: int) -> torch.Generator:
    """A CPU generator for one call of ``inputs``: draw every tensor of the call from it, in a fixed order."""
    return torch.Generator(device="cpu").manual_seed(seed)


def normal(gen: torch.Generator, shape: tuple[int, ...], dtype: str, device: Any, *, std: float = 1.0) -> torch.Tensor:
    """Normal(0, std) data drawn in fp32 on the CPU, then cast and moved: the same values on every device."""
    data = torch.randn(shape, generator=gen, dtype=torch.float32) * std
    return data.to(dtype=torch_dtype(dtype), device=device)


def itemsize(dtype: str) -> int:
    """Bytes per element of a case dtype, for the work models."""
    return torch_dtype(dtype).itemsize


def double_buffered(staging: torch.Tensor, copy_stream: Any,
                    consume: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``torch.stack([consume(batch) for batch in staging])`` with each pinned batch DMA'd on ``copy_stream`` into
    one of two reused device slots while the compute stream consumes the other.

    Events order the streams: a batch is consumed only after its copy lands, and a slot is refilled only after
    the work that read it. The side stream first waits for earlier work on the compute stream, so no copy starts
    before the caller's start event, and the compute stream waits on every copy, so the side stream is joined on
    return. The slots come from the caching allocator on the compute stream and are freed only after every copy
    into them has been waited on there, so reusing their memory later is safe.
    """
    compute = torch.cuda.current_stream(copy_stream.device)
    slots = torch.empty((2, *staging.shape[1:]), dtype=staging.dtype, device=copy_stream.device)
    copy_stream.wait_stream(compute)
    released: list[torch.cuda.Event] = []
    results = []
    for step in range(staging.shape[0]):
        slot = slots[step % 2]
        if step >= 2:
            copy_stream.wait_event(released[step - 2])
        with torch.cuda.stream(copy_stream):
            slot.copy_(staging[step], non_blocking=True)
        compute.wait_event(copy_stream.record_event())
        results.append(consume(slot))
        released.append(compute.record_event())
    return torch.stack(results)
