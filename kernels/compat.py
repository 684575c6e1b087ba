"""Adapters for PyTorch APIs that differ between the GPU machine (torch 2.11, CUDA) and CI (torch 2.13, CPU).

Each helper probes the running torch for the capability (an attribute, or a call on tiny CPU tensors) and never
reads the version string, so a backport or a removal shows up as what it is.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
import torch.nn.functional as F

COMPILE_BACKEND_ENV = "AIPERF_COMPILE_BACKEND"
_INDUCTOR_ONLY = ("mode", "options")


def compile_backend() -> str:
    """The ``torch.compile`` backend for compiled arms: "inductor", or the value of AIPERF_COMPILE_BACKEND (CI sets
    "aot_eager" or "eager": Inductor on a CPU costs 10-30 s per shape). Probes ``torch.compiler.list_backends``
    (debug backends included) and raises ValueError for a name it does not list."""
    backend = os.environ.get(COMPILE_BACKEND_ENV, "inductor")
    known = torch.compiler.list_backends(exclude_tags=())
    if backend not in known:
        raise ValueError(f"{COMPILE_BACKEND_ENV}={backend!r} is not a torch.compile backend; known: {', '.join(known)}")
    return backend


def compile(fn_or_module: Any, **kwargs: Any) -> Any:
    """``torch.compile(fn_or_module, backend=compile_backend(), **kwargs)``. ``mode`` and ``options`` configure
    Inductor only: they are passed when the backend is Inductor and dropped otherwise (other backends ignore or
    reject them)."""
    backend = compile_backend()
    if backend != "inductor":
        kwargs = {key: value for key, value in kwargs.items() if key not in _INDUCTOR_ONLY}
    return torch.compile(fn_or_module, backend=backend, **kwargs)


def has_set_stance() -> bool:
    """Whether ``torch.compiler.set_stance`` exists (e.g. "fail_on_recompile" while timing); probes the attribute."""
    return callable(getattr(torch.compiler, "set_stance", None))


@functools.cache
def sdpa_supports_enable_gqa() -> bool:
    """Whether ``F.scaled_dot_product_attention`` accepts ``enable_gqa=True`` and broadcasts 4 query heads over 2 KV
    heads; probes one call on CPU tensors (cached)."""
    q, kv = torch.zeros(1, 4, 1, 8), torch.zeros(1, 2, 1, 8)
    try:
        out = F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
    except (TypeError, RuntimeError):
        return False
    return out.shape == q.shape
