"""A kernel family: one CUDA C++ template, its typed space, and what turns a candidate into a case's arm.

The template (``templates/<name>.cu.in``) is C++ whose only holes are ``${NAME}`` constants (``string.Template``,
no new dependency): every parameter, the constants ``derive`` computes from the parameters and the target (how
many vectors a lane holds in registers at that width), and ``LAUNCHER``. All choices between code paths are made
in C++ by ``if constexpr`` and template specialization on those constants, so every candidate is the same source
the compiler checks with different numbers in it. The launcher's name and signature are the family's, never the
candidate's, which is what lets an emitted file replace another in a case unchanged.

``constraints`` returns the family's reasons to reject a candidate before compiling (divisibility and tails of the
target width, registers a held row needs); ``resources`` what the generic checks need (threads and shared memory
per CTA, a register estimate). The rest is the case: seeded inputs, the eager baseline, the float64 reference,
check shapes with tails, the timing shape, the work model, and ``arm``, which wraps a launcher (the GPU one, or the
host emulation on the CPU) into a function of the case's inputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from kernels.ch20.kernelgen.space import Candidate, Space
from pytest_aiperf import Case, Work

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_HELD_FLOATS = 64  # a lane's held row share; past this the register file, not HBM, limits a row kernel
MIN_LANE_USE = 0.75  # share of lane-vector slots that hold data at the target width


def row_reasons(label: str, width: int, threads: int, vec: int, held_floats: int) -> list[str]:
    """Why a row kernel of ``threads`` lanes and ``vec``-wide vectors, holding ``held_floats`` per lane, wastes the
    target width ``label=width``: a vector that does not divide it, idle lanes, a mostly empty last sweep (tail),
    or more held floats than registers keep at a useful occupancy. Empty when none applies."""
    reasons = []
    if width % vec:
        reasons.append(f"VEC={vec} does not divide {label}={width}: every row of the target width would take the "
                       f"1-element path")
    if threads * vec > width:
        reasons.append(f"THREADS*VEC={threads * vec} > {label}={width}: lanes idle on every row")
    else:
        sweeps = -(-width // (threads * vec))
        use = width / (sweeps * threads * vec)
        if use < MIN_LANE_USE:
            reasons.append(f"the last of {sweeps} sweeps of {threads * vec} leaves {100 * (1 - use):.0f}% of lane "
                           f"slots idle at {label}={width} (tail), over {100 * (1 - MIN_LANE_USE):.0f}%")
    if held_floats > MAX_HELD_FLOATS:
        reasons.append(f"the row held in registers takes {held_floats} floats per lane at {label}={width}, over "
                       f"{MAX_HELD_FLOATS}: spills, or an occupancy too low to cover HBM latency")
    return reasons


@dataclass(frozen=True)
class Resources:
    """What one CTA of a candidate takes, known before compiling; ``registers`` is an estimate (ptxas decides)."""

    threads: int
    smem_bytes: int
    registers: int


@dataclass(frozen=True)
class Family:
    name: str
    space: Space
    target: Mapping[str, int]  # the default shape class, e.g. {"hidden": 4096}
    derive: Callable[[Mapping[str, Any], Mapping[str, int]], dict[str, Any]]
    constraints: Callable[[Mapping[str, Any], Mapping[str, int]], list[str]]
    resources: Callable[[Mapping[str, Any], Mapping[str, int]], Resources]
    inputs: Callable[..., Sequence[Any]]
    baseline: Callable[..., Any]
    reference: Callable[..., Any]
    work: Callable[[tuple[int, ...], str], Work]
    arm: Callable[[Callable[..., int]], Callable[..., Any]]
    check_shapes: Callable[[Mapping[str, int]], list[tuple[int, ...]]]
    time_shape: Callable[[Mapping[str, int]], tuple[int, ...]]
    defaults: tuple[Mapping[str, Any], ...] = ()  # hand-picked points: CI's compile subspace, emit's fallback
    template_file: Path | None = None  # default: templates/<name>.cu.in

    @property
    def launcher(self) -> str:
        """The exported launcher: ``kernelgen_<family>``; its CPU twin is ``kernelgen_<family>_host_emulation``."""
        return f"kernelgen_{self.name}"

    @property
    def template_path(self) -> Path:
        return self.template_file or TEMPLATES / f"{self.name}.cu.in"

    @property
    def template_text(self) -> str:
        return self.template_path.read_text(encoding="utf-8")

    @property
    def template_sha256(self) -> str:
        return hashlib.sha256(self.template_text.encode()).hexdigest()

    def candidate(self, params: Mapping[str, Any], target: Mapping[str, int] | None = None) -> Candidate:
        """The candidate of validated ``params`` at ``target`` (default: the family's shape class)."""
        chosen = dict(target or self.target)
        if sorted(chosen) != sorted(self.target):
            raise ValueError(f"{self.name}: the target names {sorted(self.target)}, got {sorted(chosen)}")
        return Candidate.of(self.name, self.space.validate(params), chosen, order=self.space.names)

    def candidates(self, target: Mapping[str, int] | None = None) -> list[Candidate]:
        return [self.candidate(point, target) for point in self.space.points()]

    def named(self, name: str, target: Mapping[str, int] | None = None) -> Candidate:
        """The candidate whose name is ``name`` (as a search log or registry spells it)."""
        for candidate in self.candidates(target):
            if candidate.name == name:
                return candidate
        raise ValueError(f"{name!r} names no candidate of {self.name} at {dict(target or self.target)}")

    def case(self, optimized: Callable[..., Any], target: Mapping[str, int], *, needs_cuda: bool) -> Case:
        """The case that verifies (and times) ``optimized`` against the eager baseline at ``target``."""
        return Case(name=f"kernelgen_{self.name}", baseline=self.baseline, optimized=optimized, inputs=self.inputs,
                    reference=self.reference, work=self.work, check_shapes=self.check_shapes(target),
                    time_shapes=[self.time_shape(target)], dtypes=["bf16"], needs_cuda=needs_cuda)
