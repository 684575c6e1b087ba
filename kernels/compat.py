"""Adapters for PyTorch APIs that differ between the GPU machine (torch 2.11, CUDA) and CI (torch 2.13, CPU).

Each helper probes the running torch for the capability (an attribute, or a call on tiny CPU tensors) and never
reads the version string, so a backport or a removal shows up as what it is.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Iterator

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


def _expandable_segments_setting() -> str:
    """"True" or "False": the caching allocator's ``expandable_segments`` option as it last parsed it (through
    ``torch._C._accelerator_getAllocatorSettings`` where this torch has it, else from ``PYTORCH_CUDA_ALLOC_CONF``)."""
    get = getattr(torch._C, "_accelerator_getAllocatorSettings", None)
    settings = get() if callable(get) else os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
    for option in settings.split(","):
        key, _, value = option.partition(":")
        if key.strip() == "expandable_segments":
            return "True" if value.strip().lower() == "true" else "False"
    return "False"


def _set_allocator_settings(settings: str) -> None:
    setter = getattr(torch._C, "_accelerator_setAllocatorSettings", None)
    if setter is None:
        setter = torch.cuda.memory._set_allocator_settings
    setter(settings)


def _fresh_block_kind() -> bool | None:
    """``is_expandable`` of the segment a fresh block lands in: the block is larger than any free block the cache
    holds, so the allocator must make (or grow) a segment for it under the current settings."""
    torch.cuda.empty_cache()
    free = [block["size"] for segment in torch.cuda.memory_snapshot() for block in segment["blocks"]
            if block["state"] == "inactive"]
    block = torch.empty(max([4 << 20, *[size + (20 << 20) for size in free]]), dtype=torch.uint8, device="cuda")
    try:
        return next((segment.get("is_expandable") for segment in torch.cuda.memory_snapshot()
                     if segment["address"] <= block.data_ptr() < segment["address"] + segment["total_size"]), None)
    finally:
        del block
        torch.cuda.empty_cache()


@functools.cache
def expandable_segments_switchable() -> str | None:
    """None where the caching allocator's ``expandable_segments`` option can be switched while the process runs
    (probed on the current CUDA device: switched on, a fresh block must land in an expandable segment, and switched
    off again, the next fresh block in a plain one; PyTorch's allocator notes say the option may be switched during
    a run and applies to the segments made after); else why not. Cached per process."""
    if not torch.cuda.is_available():
        return "no CUDA device: the caching allocator's segments are a CUDA matter"
    if not callable(getattr(torch._C, "_accelerator_setAllocatorSettings", None)) and \
            not callable(getattr(torch.cuda.memory, "_set_allocator_settings", None)):
        return "this torch has no way to set allocator options at run time"
    kinds, previous = [], _expandable_segments_setting()
    try:
        for enabled in (True, False):
            _set_allocator_settings(f"expandable_segments:{enabled}")
            kinds.append(_fresh_block_kind())
    except RuntimeError as exc:
        return f"switching expandable_segments failed: {exc}"
    finally:
        _set_allocator_settings(f"expandable_segments:{previous}")
    if kinds != [True, False]:
        return f"switching expandable_segments on and off gave segments with is_expandable {kinds}, not [True, False]"
    return None


@contextlib.contextmanager
def expandable_segments() -> Iterator[None]:
    """The CUDA caching allocator with ``expandable_segments:True`` for the block, the previous setting restored
    after it; a no-op off CUDA. Raises RuntimeError, with the probe's reason, where the option cannot be switched
    at run time (``expandable_segments_switchable``)."""
    if not torch.cuda.is_available():
        yield
        return
    reason = expandable_segments_switchable()
    if reason is not None:
        raise RuntimeError(f"expandable segments cannot be switched on in this process: {reason}")
    previous = _expandable_segments_setting()
    _set_allocator_settings("expandable_segments:True")
    try:
        yield
    finally:
        _set_allocator_settings(f"expandable_segments:{previous}")


@functools.cache
def grouped_mm_supported(device_type: str, dtype: torch.dtype) -> bool:
    """Whether ``torch._grouped_mm(a, b, offs=...)`` runs on ``device_type`` in ``dtype`` with a 2D ``a`` (rows
    sorted by group), a 3D ``b`` (groups, K, N) viewed from ``nn.Linear``-style (groups, N, K) weights, int32 ``offs``
    (each group's end row) and an empty group, and matches a per-group ``mm``; probes one call on tiny tensors
    (cached). Where it cannot (no such function, the dtype, the device), the answer is False."""
    fn = getattr(torch, "_grouped_mm", None)
    if fn is None:
        return False
    gen = torch.Generator().manual_seed(0)
    a, w = torch.randn(24, 16, generator=gen), torch.randn(3, 8, 16, generator=gen)
    ends = [5, 5, 24]
    device = torch.device(device_type)
    try:
        out = fn(a.to(device, dtype), w.to(device, dtype).transpose(-2, -1),
                 offs=torch.tensor(ends, dtype=torch.int32, device=device))
    except (RuntimeError, TypeError, NotImplementedError):
        return False
    want = torch.cat([a[start:end] @ w[group].t() for group, (start, end) in enumerate(zip([0, *ends], ends))])
    return out.shape == want.shape and bool(torch.allclose(out.float().cpu(), want, rtol=3e-2, atol=0.25))


@functools.cache
def rowwise_scaled_mm_reason(device: torch.device) -> str | None:
    """None where ``torch._scaled_mm`` runs an e4m3 x e4m3 product with rowwise scales (``scale_a`` (M, 1),
    ``scale_b`` (1, N), fp32; bf16 out) on ``device`` and returns the dequantized product; else why not. Probes one
    16 x 16 x 16 call on that device (cached per device): CUDA runs it on sm_90 (a CUTLASS kernel), torch 2.13's CPU
    build runs it too, other builds and GPUs raise."""
    if not callable(getattr(torch, "_scaled_mm", None)):
        return "this torch has no torch._scaled_mm"
    a = torch.eye(16, device=device).to(torch.float8_e4m3fn)
    b = (torch.arange(256, device=device, dtype=torch.float32).reshape(16, 16) % 8).to(torch.float8_e4m3fn)
    scale_a = torch.full((16, 1), 0.5, device=device)
    scale_b = torch.full((1, 16), 2.0, device=device)
    try:
        out = torch._scaled_mm(a, b.t().contiguous().t(), scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        return f"torch._scaled_mm with rowwise scales fails on {device}: {str(exc).splitlines()[0]}"
    if not torch.equal(out.float().cpu(), b.float().cpu()):
        return f"torch._scaled_mm with rowwise scales on {device} does not return the scaled product"
    return None
