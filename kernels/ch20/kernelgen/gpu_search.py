"""The search on a GPU, as the CLI's ``search`` command runs it, and what a promotion writes.

Stages: ``build_candidates.compile_all`` (parallel nvcc through the build cache), verification on the CPU by host
emulation first (cheap, and it keeps an indexing bug from faulting the GPU context), then on the GPU with the
case's checks; timing with ``clocks.CudaEvents`` over ``measure.placements`` of the family's timing inputs, cold
L2, like any case. The incumbent is the registry's promoted kernel for this family, target and GPU when there is
one (rendered from its record), else the family's eager baseline.

A promotion writes ``kernels/ch20/generated/<family>_<target>.cu`` (the file a ch20 case loads) and merges the
record into the registry; the search log is written as JSON beside it either way. Nothing here runs without CUDA.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from kernels.ch20.kernelgen import build_candidates, emit, pipeline, registry, render, search, verification
from kernels.ch20.kernelgen.family import Family
from kernels.ch20.kernelgen.search_log import SearchLog

GENERATED = Path(__file__).resolve().parents[1] / "generated"


def generated_path(fam: Family, target: dict[str, int]) -> Path:
    return GENERATED / f"{fam.name}_{'-'.join(f'{k}{v}' for k, v in sorted(target.items()))}.cu"


def _incumbent(fam: Family, target: dict[str, int], hardware: str,
               registry_path: Path) -> tuple[str, Callable[..., Any]]:
    current = emit.promoted(fam, target, hardware, registry_path)
    if current is None:
        return f"eager baseline ({fam.baseline.__name__})", fam.baseline
    built = build_candidates.compile_all([current], emit.work_folder(), {fam.name: fam})[current]
    return f"promoted {current.name}", verification.arm(fam, built, "cuda")


def _bandwidth(fam: Family, shape: tuple[int, ...], log: SearchLog,
               ceilings: dict[str, Any] | None) -> dict[str, float]:
    """The winner's bytes per second (the family's work model over its median time) against the copy ceiling
    measured in this process; the issue's target for fused add + RMSNorm is at least 85% of it."""
    if log.decision is None or not ceilings or not log.decision.measurement.candidate_ms:
        return {}
    gbps = fam.work(shape, "bf16").bytes / (log.decision.measurement.candidate_ms * 1e-3) / 1e9
    fraction = gbps / ceilings["copy_gbps"]
    log.notes.append(f"winner moves {gbps:.0f} GB/s: {100 * fraction:.0f}% of the copy ceiling "
                     f"{ceilings['copy_gbps']:.0f} GB/s measured in this process")
    return {"gbps": gbps, "copy_ceiling_gbps": ceilings["copy_gbps"], "fraction_of_copy": fraction}


def _promote(fam: Family, target: dict[str, int], result: pipeline.Result, hardware: str, extra: dict[str, Any],
             registry_path: Path) -> None:
    """Write the winner where the ch20 case loads it and merge its record into the registry."""
    assert result.built is not None and result.winner is not None and result.log.decision is not None
    source = generated_path(fam, target)
    text = result.built.source.read_text(encoding="utf-8")
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(text, encoding="utf-8")
    final = result.log.decision.measurement
    registry.promote({
        "family": fam.name, "target": dict(target), "hardware": hardware, "candidate": result.winner.name,
        "params": result.winner.values, "template_sha256": fam.template_sha256,
        "generator_version": render.GENERATOR_VERSION, "source": str(source.relative_to(GENERATED.parents[2])),
        "source_sha256": hashlib.sha256(text.encode()).hexdigest(), "speedup": final.estimate.speedup,
        "lo": final.estimate.lo, "hi": final.estimate.hi, "rounds": final.estimate.rounds,
        "noise_margin": final.margin, **extra,
        "promoted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}, registry_path)


def run(fam: Family, target: dict[str, int], policy: search.Policy, *, registry_path: Path = registry.DEFAULT,
        log_path: Path | None = None, promote: bool = True) -> tuple[pipeline.Result, Path]:
    """Search ``fam`` at ``target`` on this GPU; returns the result and where its log was written."""
    import torch

    from pytest_aiperf import clocks, machine, measure

    gpu = torch.cuda.get_device_name()
    hardware = machine.hardware_key(gpu)
    incumbent_name, incumbent = _incumbent(fam, target, hardware, registry_path)
    shape = fam.time_shape(target)
    inputs = fam.inputs(shape, "bf16", policy.seed, "cuda")
    backend = clocks.CudaEvents()
    timer = search.Timer(backend, incumbent, measure.placements(inputs), policy)

    def verify(candidate: Any, built: build_candidates.Built) -> str | None:
        return verification.verify(fam, built, "cpu") or verification.verify(fam, built, "cuda")

    stages = pipeline.Stages(
        compile=lambda chosen: build_candidates.compile_all(chosen, emit.work_folder(), {fam.name: fam}),
        verify=verify, arm=lambda candidate, built: verification.arm(fam, built, "cuda"))
    log = SearchLog(fam.name, dict(target), fam.space.size, incumbent_name)
    try:
        result = pipeline.run(fam.candidates(target), {fam.name: fam}, stages=stages, timer=timer, log=log)
    except verification.ContextLost as exc:  # the log so far is still written: it names the candidate
        log.outcome = f"search ended: {exc}"
        result = pipeline.Result(log)
    bandwidth = _bandwidth(fam, shape, log, measure.measure_ceilings(backend)) if log.decision else {}
    if result.promote and promote:
        _promote(fam, target, result, hardware, {
            "gpu": gpu, "incumbent": incumbent_name, "time_shape": list(shape), "torch": torch.__version__,
            "seed": policy.seed, **bandwidth}, registry_path)
    log_path = log_path or GENERATED / f"search-{fam.name}-{hardware}.json"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(json.dumps(log.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
    return result, log_path
