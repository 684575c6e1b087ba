"""``--emit PATH``: write one candidate as a ``.cu`` file that compiles and plugs into a case unchanged.

Which candidate: the one named (``--params`` or ``--candidate``), else the registry's promoted kernel for the
family, target and hardware (re-rendered, and refused if the template changed since it was promoted: its record
would no longer describe the file), else the family's hand-picked defaults in order, which are unmeasured and say
so. Before anything is written a candidate must pass the static constraints, compile through the build cache for
``build.arch()`` (sm_90a on Hopper or in CI), pass ptxas's judgement (no spills, occupancy) and pass the checks
on the CPU by its host emulation; the first candidate that passes is written atomically. When none passes, ``EmitError`` carries every candidate's reason and
nothing is written.

The emitted file exports the family's launcher (``kernelgen_<family>``, the family's fixed signature) and its host
emulation, so a case that loads it with ``CudaLibrary`` needs no edit when a better candidate replaces it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from kernels.ch20.kernelgen import build_candidates, constraints, registry, render, verification
from kernels.ch20.kernelgen.build_candidates import Built
from kernels.ch20.kernelgen.family import Family
from kernels.ch20.kernelgen.space import Candidate
from pytest_aiperf import build


class EmitError(RuntimeError):
    """No candidate could be emitted; the message says why for each one tried."""


@dataclass(frozen=True)
class Emitted:
    candidate: Candidate
    path: Path
    built: Built
    why: str  # which rule chose it: named, promoted, default


def work_folder() -> Path:
    """Where candidates are rendered before building: beside the build cache."""
    return build.cache_dir() / "kernelgen-sources"


def promoted(fam: Family, target: dict[str, int], hardware: str | None,
             path: Path = registry.DEFAULT) -> Candidate | None:
    """The promoted candidate of ``fam`` at ``target`` on ``hardware`` (any hardware when None and only one has a
    record); None without a record. EmitError when the record's template differs from the current one."""
    records = {k: r for k, r in registry.read(path).items()
               if r["family"] == fam.name and r["target"] == target and hardware in (None, r["hardware"])}
    if not records:
        return None
    if len(records) > 1:
        raise EmitError(f"promoted kernels of {fam.name} at {target} on several GPUs ({', '.join(sorted(records))}): "
                        f"name one with --hardware")
    record = next(iter(records.values()))
    if record["template_sha256"] != fam.template_sha256:
        raise EmitError(f"{record['candidate']} was promoted from template {record['template_sha256'][:12]}, but "
                        f"{fam.template_path.name} is now {fam.template_sha256[:12]}: search again to promote a "
                        f"rendering of the current template")
    return fam.candidate(record["params"], target)


def check(fam: Family, candidates: Sequence[Candidate]) -> tuple[dict[Candidate, Built], dict[Candidate, str]]:
    """Build every candidate, then judge each: ``(builds, reasons)``; a candidate without a reason passed."""
    builds = build_candidates.compile_all(list(candidates), work_folder(), {fam.name: fam})
    reasons: dict[Candidate, str] = {}
    for candidate, built in builds.items():
        if built.library is None:
            reasons[candidate] = f"did not compile: {built.log.strip()[-2000:]}"
            continue
        found = constraints.compiled_reasons(fam, candidate, built.kernels)
        if found:
            reasons[candidate] = "; ".join(found)
            continue
        wrong = verification.verify(fam, built, "cpu")
        if wrong is not None:
            reasons[candidate] = wrong
    return builds, reasons


def emit(fam: Family, path: Path, *, named: Candidate | None = None, target: dict[str, int] | None = None,
         hardware: str | None = None, registry_path: Path = registry.DEFAULT) -> Emitted:
    """Write the chosen candidate (module doc) at ``target`` (default: the family's, or the named candidate's) to
    ``path``; EmitError, with every reason, when none passes."""
    target = named.target_values if named is not None else dict(target or fam.target)
    chosen = named or promoted(fam, target, hardware, registry_path)
    why = "named" if named else "promoted" if chosen else "default (unmeasured: no promoted kernel in the registry)"
    tried = [chosen] if chosen else [fam.candidate(p, target) for p in fam.defaults]
    if not tried:
        raise EmitError(f"{fam.name} has no promoted kernel and no defaults: name a candidate with --params")
    failed: dict[Candidate, str] = {}
    for candidate in tried:  # in order, one at a time: the first usually passes
        static = constraints.static_reasons(fam, candidate)
        if static:
            failed[candidate] = "; ".join(static)
            continue
        builds, reasons = check(fam, [candidate])
        if candidate not in reasons:
            _write_atomic(path, builds[candidate].source.read_text(encoding="utf-8"))
            return Emitted(candidate, path, builds[candidate], why)
        failed[candidate] = reasons[candidate]
    lines = [f"- {c.name}: {reason}" for c, reason in failed.items()]
    raise EmitError("nothing to emit, no candidate passed:\n" + "\n".join(lines))


def _write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def header_of(path: Path) -> dict[str, object]:
    """The provenance header of an emitted file (``render.read_header``)."""
    return render.read_header(Path(path).read_text(encoding="utf-8"))
