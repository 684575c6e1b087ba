"""Verify a compiled candidate with the checks every case gets (``pytest_aiperf.checks.verify``).

The candidate becomes the optimized arm of the family's case (eager baseline, float64 reference, the family's
check shapes with tails, 3 seeds, NaN-poisoned outputs, inputs that must come back unmodified), so a candidate is
held to exactly the rule its promoted kernel will be gated under.

- ``device="cpu"`` (CI, and the first check on a GPU machine too): the arm calls the library's
  ``<launcher>_host_emulation``, the candidate's own per-lane code run lane by lane on the host. This catches wrong
  indexing, tails and arithmetic (the planted VEC tail bug) without a GPU; it cannot see the shuffles, barriers,
  vector instructions, alignment faults or races, which only the GPU run checks.
- ``device="cuda"``: the arm calls the launcher through ``CudaLibrary`` on torch's current stream. A launch error
  is a rejection; an error that leaves the CUDA context unusable (a misaligned or illegal address) is raised as
  ``ContextLost``, since no later candidate could run in this process.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any, Callable

from kernels.ch20.kernelgen.build_candidates import Built
from kernels.ch20.kernelgen.family import Family
from pytest_aiperf import checks
from pytest_aiperf.build import CudaError, CudaLibrary


class ContextLost(RuntimeError):
    """A candidate's fault left the CUDA context unusable: the search cannot go on in this process."""


def host_call(library: Path, symbol: str) -> Callable[..., int]:
    """``symbol`` of ``library`` as a host function of tensors (CPU data pointers), ints and floats, following the
    launcher convention without the stream; a nonzero return raises CudaError."""
    import torch

    function = getattr(ctypes.CDLL(str(library)), symbol)
    function.restype = ctypes.c_int

    def convert(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.is_cuda or not value.is_contiguous():
                raise ValueError(f"{symbol} takes contiguous CPU tensors")
            return ctypes.c_void_p(value.data_ptr())
        return ctypes.c_int64(int(value)) if isinstance(value, (bool, int)) else ctypes.c_double(value)

    def call(*args: Any) -> int:
        code = function(*(convert(a) for a in args))
        if code != 0:
            raise CudaError(f"{library.name}:{symbol} returned {code}")
        return code

    call.__name__ = symbol
    return call


def arm(fam: Family, built: Built, device: str) -> Callable[..., Any]:
    """The candidate as a function of the case's inputs: host emulation on ``cpu``, the launcher on ``cuda``."""
    if built.library is None:
        raise ValueError(f"{built.candidate.name} did not compile")
    if device == "cpu":
        return fam.arm(host_call(built.library, f"{fam.launcher}_host_emulation"))
    launcher = getattr(CudaLibrary(built.source, built.source.name), fam.launcher)
    return fam.arm(launcher)


def verify(fam: Family, built: Built, device: str) -> str | None:
    """None when the candidate passes every check shape and seed on ``device``, else the reason it fails."""
    case = fam.case(arm(fam, built, device), built.candidate.target_values, needs_cuda=device != "cpu")
    try:
        checks.verify(case.params()[0], device)
    except checks.CorrectnessError as exc:
        return f"wrong on {device}: {exc}"
    except CudaError as exc:
        _raise_if_context_lost(built, device, exc)
        return f"launch failed on {device}: {exc}"
    return None


def _raise_if_context_lost(built: Built, device: str, exc: Exception) -> None:
    if device == "cpu":
        return
    import torch

    try:
        torch.cuda.synchronize()
    except RuntimeError as lost:
        raise ContextLost(f"{built.candidate.name} faulted ({exc}); the CUDA context is unusable ({lost})") from exc
