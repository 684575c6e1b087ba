"""kernels.ch20.kernelgen with nvcc and without a GPU: the fixed subspace (every family's defaults) compiles for
sm_90a through the build cache with zero spills, and passes the case's checks on the CPU through its host
emulation; the planted wrong template (a VEC tail bug) compiles and is rejected by those same checks.

The host emulation runs each candidate's own per-lane code lane by lane: it checks indexing, tails and arithmetic.
The shuffles, barriers, vector instructions and alignment run only on a GPU (``verification``'s doc).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from kernels.ch20.kernelgen import build_candidates, constraints, verification
from kernels.ch20.kernelgen.families import FAMILIES, family

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").is_file(),
                                reason="needs nvcc")
TAIL_RULE = "dim % kVec == 0"


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This run's temporary root, shared by its xdist workers, so each candidate compiles once per run."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    """The run's build cache for the kernelgen tests, sm_90a as the target; yields a folder for sources."""
    root = shared_root(tmp_path_factory)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIPERF_CACHE_DIR", str(root / "kernelgen-cache"))
        patch.setenv("AIPERF_CUDA_ARCH", "sm_90a")
        yield tmp_path_factory.mktemp("kernelgen-sources")


def planted_family(folder: Path):
    """fused_add_rmsnorm with its vector-path rule broken: rows whose width is not a multiple of VEC still take
    the VEC path, which covers dim // VEC vectors and never touches the last dim % VEC elements."""
    fam = family("fused_add_rmsnorm")
    text = fam.template_text
    assert text.count(TAIL_RULE) == 1, "the template's vector-path rule moved: update the planted bug"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "planted.cu.in").write_text(text.replace(TAIL_RULE, "dim >= kVec"), encoding="utf-8")
    return dataclasses.replace(fam, name="fused_add_rmsnorm_planted_tail_bug", template_file=folder / "planted.cu.in")


@pytest.fixture(scope="module")
def built(cache: Path):
    planted = planted_family(cache / "planted")
    families = {**FAMILIES, planted.name: planted}
    chosen = [fam.candidate(p) for fam in FAMILIES.values() for p in fam.defaults]
    chosen.append(planted.candidate(family("fused_add_rmsnorm").defaults[0]))
    return families, build_candidates.compile_all(chosen, cache, families)


@needs_nvcc
def test_the_fixed_subspace_compiles_for_sm90a_with_zero_spills_and_passes_ptxas(built):
    families, builds = built
    for candidate, result in builds.items():
        assert result.library is not None and result.library.is_file(), f"{candidate.name}:\n{result.log}"
        assert "sm_90a" in result.library.name
        assert result.kernels, f"{candidate.name}: no kernel in ptxas's report:\n{result.log}"
        assert not [k for k in result.kernels if k.spills], f"{candidate.name} spills:\n{result.log}"
        assert constraints.compiled_reasons(families[candidate.family], candidate, result.kernels) == []


@needs_nvcc
def test_every_default_candidate_passes_the_cases_checks_on_the_cpu(built):
    families, builds = built
    for candidate, result in builds.items():
        if candidate.family in FAMILIES:
            assert verification.verify(families[candidate.family], result, "cpu") is None, candidate.name


@needs_nvcc
def test_the_planted_tail_bug_compiles_and_is_rejected_by_the_checks(built):
    families, builds = built
    (candidate, result), = [(c, r) for c, r in builds.items() if c.family.endswith("planted_tail_bug")]
    assert result.library is not None, "the negative control must compile: only the checks may reject it"
    reason = verification.verify(families[candidate.family], result, "cpu")
    assert reason is not None and "optimized output #0 disagrees with the float64 reference" in reason
    assert "shape 3x17" in reason, "the first check shape with a tail (17 = 2 vectors of 8 + 1) catches it"


@needs_nvcc
def test_a_source_that_does_not_compile_is_a_rejection_with_the_compilers_message(cache: Path):
    fam = family("row_softmax")
    folder = cache / "broken"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.cu.in").write_text(fam.template_text.replace("constexpr int kWarps", "constexpr int kWarps ="))
    broken = dataclasses.replace(fam, name="row_softmax_broken", template_file=folder / "broken.cu.in")
    candidate = broken.candidate(fam.defaults[0])
    result = build_candidates.compile_all([candidate], folder, {broken.name: broken})[candidate]
    assert result.library is None and "did not compile" in result.log and "error" in result.log
