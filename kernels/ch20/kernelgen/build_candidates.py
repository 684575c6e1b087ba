"""Compile rendered candidates through the project's build cache, and read ptxas's resource report for each.

The shared library comes from ``pytest_aiperf.build.build_all`` (content-addressed cache, one nvcc per CPU, the
target of ``build.arch()``: sm_90a on Hopper, or ``$AIPERF_CUDA_ARCH`` on a machine without a GPU, as in CI). A
source that does not compile is a rejected candidate whose reason is the compiler's message, never a crash.

``build`` keeps nvcc's output only on failure and takes no extra flags, so the register and spill counts come from
a second, device-only compile, ``nvcc -cubin -Xptxas -v`` with the same language flags and target (about a third of
the full build's time), cached beside the libraries under ``kernelgen-ptxas/`` by the same kind of key: the
source, the convention header, the compiler's version, the flags and the target.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from kernels.ch20.kernelgen import render
from kernels.ch20.kernelgen.constraints import KernelUsage, parse_ptxas
from kernels.ch20.kernelgen.family import Family
from kernels.ch20.kernelgen.space import Candidate
from pytest_aiperf import build

PTXAS_FLAGS = ("-std=c++17", "-O3", "-lineinfo", "-cubin", "-Xptxas", "-v")


@dataclass
class Built:
    """A candidate after compiling: its library, or the compiler's message in ``log``; ptxas's kernels."""

    candidate: Candidate
    source: Path
    library: Path | None = None
    log: str = ""
    kernels: list[KernelUsage] = field(default_factory=list)


@functools.lru_cache(maxsize=None)
def _compiler_version(compiler: str) -> str:
    return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60, check=False).stdout


def ptxas_report(source: Path, target: str) -> str:
    """``nvcc -cubin -Xptxas -v`` output of ``source`` for ``target`` (cached by content); BuildError if it fails."""
    compiler = build.nvcc()
    digest = hashlib.sha256()
    for part in (compiler, _compiler_version(compiler), target, *PTXAS_FLAGS):
        digest.update(part.encode() + b"\0")
    for path in (source, build.INCLUDE / "aiperf.cuh"):
        digest.update(path.read_bytes() + b"\0")
    cached = build.cache_dir() / "kernelgen-ptxas" / f"{source.stem}-{target}-{digest.hexdigest()[:20]}.txt"
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as scratch:
        cmd = [compiler, *PTXAS_FLAGS, f"-gencode=arch=compute_{target[3:]},code={target}", f"-I{build.INCLUDE}",
               "-o", str(Path(scratch) / "out.cubin"), str(source)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=build.TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise build.BuildError(f"{source.name}: ptxas report failed (exit {done.returncode}):\n{done.stderr.strip()}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(done.stderr, encoding="utf-8")
    partial.replace(cached)
    return done.stderr


def compile_all(candidates: Sequence[Candidate], folder: Path, families: dict[str, Family],
                jobs: int | None = None) -> dict[Candidate, Built]:
    """Render every candidate into ``folder``, build them all in parallel, then read ptxas's report of those that
    built. ``families`` maps a candidate's family name to its family (a planted one included)."""
    sources = {c: render.write(c, folder, families[c.family]) for c in candidates}
    libraries = build.build_all(sources.values(), jobs=jobs)
    target = build.arch()
    results: dict[Candidate, Built] = {}
    for candidate, source in sources.items():
        library = libraries.get(source.resolve())
        if isinstance(library, Path):
            results[candidate] = Built(candidate, source, library=library)
        else:
            results[candidate] = Built(candidate, source, log=str(library))
    built = [b for b in results.values() if b.library is not None]
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs or build.usable_cpus()) as pool:
        reports = dict(zip([b.candidate for b in built], pool.map(lambda b: _report(b.source, target), built)))
    for candidate, report in reports.items():
        if isinstance(report, build.BuildError):
            results[candidate].log = str(report)
        else:
            results[candidate].log = report
            results[candidate].kernels = parse_ptxas(report)
    return results


def _report(source: Path, target: str) -> str | build.BuildError:
    try:
        return ptxas_report(source, target)
    except build.BuildError as exc:
        return exc
