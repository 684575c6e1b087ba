"""Reasons to reject a candidate: before compiling (its own numbers) and after (what ptxas reports).

Before compiling, ``static_reasons`` applies the family's rules (divisibility and tails of the target width, held
registers) and the generic ones: a CTA of at most 1024 threads in whole warps, static shared memory within the
48 KB a CTA gets without opting in, and occupancy by the CUDA occupancy formula with the family's register
*estimate*. After compiling, ``compiled_reasons`` reads ``nvcc -Xptxas -v``: any spill (spill stores or loads, or
a stack frame, which is local memory) in any kernel instance rejects the candidate, and the occupancy formula is
applied again with the registers ptxas actually allocated to the instance that runs at the target width.

The occupancy formula (CUDA C++ Programming Guide, "Technical Specifications per Compute Capability", and the
occupancy calculator's rules), for compute capability 9.0 (H100, H200): a CTA of w warps fits
``min(32, 64 // w, (65536 // ceil256(32 r)) // w, 233472 // ceil128(smem + 1024))`` times on an SM, for r
registers per thread (allocated per warp in units of 256) and smem bytes of static shared memory (1 KB of it
reserved per CTA, allocated in units of 128 bytes). Occupancy is resident warps over 64. A bandwidth-bound row
kernel wants enough bytes in flight per SM to cover HBM latency; below 25% it rarely has them (a floor, not a
model: the search's timings decide among the candidates above it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kernels.ch20.kernelgen.family import Family, Resources
from kernels.ch20.kernelgen.space import Candidate

MIN_OCCUPANCY = 0.25


@dataclass(frozen=True)
class Sm:
    """Per-SM and per-CTA limits of one compute capability."""

    max_warps: int = 64
    max_ctas: int = 32
    max_cta_threads: int = 1024
    registers: int = 65536
    max_thread_registers: int = 255
    register_unit: int = 256  # registers are allocated per warp in units of this
    smem_bytes: int = 233472  # 228 KB per SM
    static_smem_per_cta: int = 49152
    smem_reserved_per_cta: int = 1024
    smem_unit: int = 128


SM90 = Sm()


@dataclass(frozen=True)
class Occupancy:
    ctas: int
    fraction: float
    limiter: str  # "warps", "ctas", "registers" or "shared memory"


def occupancy(threads: int, registers: int, smem_bytes: int, sm: Sm = SM90) -> Occupancy:
    """CTAs per SM and resident warps / max warps for a CTA of ``threads`` (the formula in the module doc)."""
    warps = -(-threads // 32)
    per_warp = -(-registers * 32 // sm.register_unit) * sm.register_unit
    smem = -(-(smem_bytes + sm.smem_reserved_per_cta) // sm.smem_unit) * sm.smem_unit
    limits = {"warps": sm.max_warps // warps, "ctas": sm.max_ctas,
              "registers": (sm.registers // per_warp) // warps if per_warp else sm.max_ctas,
              "shared memory": sm.smem_bytes // smem}
    limiter = min(limits, key=lambda k: limits[k])
    ctas = limits[limiter]
    return Occupancy(ctas=ctas, fraction=ctas * warps / sm.max_warps, limiter=limiter)


def _occupancy_reason(res: Resources, registers: int, source: str, sm: Sm) -> list[str]:
    occ = occupancy(res.threads, registers, res.smem_bytes, sm)
    if occ.fraction < MIN_OCCUPANCY:
        return [f"occupancy {100 * occ.fraction:.0f}% ({occ.ctas} CTAs of {res.threads} threads per SM, limited by "
                f"{occ.limiter}; {registers} registers per thread, {source}) is under {100 * MIN_OCCUPANCY:.0f}%"]
    return []


def static_reasons(fam: Family, candidate: Candidate, sm: Sm = SM90) -> list[str]:
    """Every reason known before compiling; empty for a candidate worth compiling."""
    params, target = candidate.values, candidate.target_values
    reasons = list(fam.constraints(params, target))
    res = fam.resources(params, target)
    if res.threads > sm.max_cta_threads or res.threads % 32:
        reasons.append(f"a CTA of {res.threads} threads: at most {sm.max_cta_threads}, in whole warps")
        return reasons
    if res.smem_bytes > sm.static_smem_per_cta:
        reasons.append(f"{res.smem_bytes} bytes of static shared memory per CTA, over {sm.static_smem_per_cta}")
    if res.registers > sm.max_thread_registers:
        reasons.append(f"an estimated {res.registers} registers per thread, over {sm.max_thread_registers}")
    else:
        reasons += _occupancy_reason(res, res.registers, "estimated", sm)
    return reasons


@dataclass(frozen=True)
class KernelUsage:
    """One kernel instance in ptxas's report: ``vec`` and ``held`` are its template arguments (V, H)."""

    vec: int
    held: int
    registers: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int

    @property
    def spills(self) -> bool:
        return bool(self.stack_bytes or self.spill_stores or self.spill_loads)


_ENTRY = re.compile(r"Compiling entry function '(\S+)'")
_ARGS = re.compile(r"ILi(\d+)ELi(\d+)EE")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


def parse_ptxas(report: str) -> list[KernelUsage]:
    """The kernels of a ``-Xptxas -v`` report, each with its template arguments, registers and spills."""
    kernels = []
    parts = _ENTRY.split(report)
    for name, body in zip(parts[1::2], parts[2::2]):
        args, frame, regs = _ARGS.search(name), _FRAME.search(body), _REGS.search(body)
        if not (args and frame and regs):
            continue
        kernels.append(KernelUsage(vec=int(args.group(1)), held=int(args.group(2)), registers=int(regs.group(1)),
                                   stack_bytes=int(frame.group(1)), spill_stores=int(frame.group(2)),
                                   spill_loads=int(frame.group(3))))
    return kernels


def compiled_reasons(fam: Family, candidate: Candidate, kernels: list[KernelUsage], sm: Sm = SM90) -> list[str]:
    """Reasons from ptxas's report: spills anywhere, then the target instance's occupancy with its real registers."""
    if not kernels:
        return ["ptxas reported no kernel instance (no -Xptxas -v output to judge)"]
    reasons = [f"kernel<V={k.vec}, H={k.held}> spills: {k.stack_bytes} bytes stack frame, {k.spill_stores} bytes "
               f"spill stores, {k.spill_loads} bytes spill loads" for k in kernels if k.spills]
    params, target = candidate.values, candidate.target_values
    held = fam.derive(params, target)["HELD"]
    runs = [k for k in kernels if (k.vec, k.held) == (params["VEC"], held)]
    if runs:
        reasons += _occupancy_reason(fam.resources(params, target), runs[0].registers,
                                     f"ptxas's count for kernel<V={runs[0].vec}, H={runs[0].held}>", sm)
    else:
        reasons.append(f"no kernel<V={params['VEC']}, H={held}> in ptxas's report: the target width's instance "
                       f"is missing")
    return reasons
