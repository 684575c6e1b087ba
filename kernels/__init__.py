"""Baseline and optimized implementations, one package per chapter, one module per technique.

The helpers here turn a case's dtype name and seed into fresh, deterministic tensors, so every
``inputs`` function in every chapter draws its data the same way: on the CPU from a seeded generator,
then moved to the device (identical values on CPU and GPU for a given seed).
"""

from __future__ import annotations

from typing import Any

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
