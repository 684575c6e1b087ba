"""kernels.ch20.kernelgen without a compiler: typed spaces, byte-exact rendering (golden files), the provenance
header, static constraints and the occupancy formula, and the parsing of ptxas's report.

A golden file changed on purpose (a template edit) is regenerated, in pytest_aiperf/tests/kernels/, with
``python -m kernels.ch20.kernelgen render --family F --candidate NAME > kernelgen_golden/NAME.cu``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kernels.ch20.kernelgen import constraints, render
from kernels.ch20.kernelgen.families import FAMILIES, family
from kernels.ch20.kernelgen.space import Param

GOLDEN = Path(__file__).resolve().parent / "kernelgen_golden"
DEFAULTS = [(fam.name, fam.candidate(p)) for fam in FAMILIES.values() for p in fam.defaults]


@pytest.mark.parametrize("fam_name, candidate", DEFAULTS, ids=[c.name for _, c in DEFAULTS])
def test_a_default_candidate_renders_byte_identical_to_its_golden_file(fam_name, candidate):
    golden = GOLDEN / f"{candidate.name}.cu"
    assert golden.is_file(), f"no golden file for {candidate.name}: render one (see the module doc)"
    assert render.render(candidate) == golden.read_text(encoding="utf-8"), (
        f"{candidate.name} no longer renders as its golden file; if the template changed on purpose, regenerate it")


def test_the_golden_files_are_exactly_the_defaults():
    assert sorted(p.name for p in GOLDEN.glob("*.cu")) == sorted(f"{c.name}.cu" for _, c in DEFAULTS)


@pytest.mark.parametrize("fam", FAMILIES.values(), ids=list(FAMILIES))
def test_the_header_records_family_target_params_and_the_templates_hash(fam):
    candidate = fam.candidate(fam.defaults[0])
    head = render.read_header(render.render(candidate))
    assert head["family"] == fam.name and head["target"] == dict(fam.target)
    assert head["params"] == candidate.values and list(head["params"]) == fam.space.names
    assert head["template-sha256"] == hashlib.sha256(fam.template_path.read_bytes()).hexdigest()
    assert head["generator-version"] == render.GENERATOR_VERSION and head["candidate"] == candidate.name


@pytest.mark.parametrize("fam", FAMILIES.values(), ids=list(FAMILIES))
def test_every_point_of_every_space_renders_with_every_hole_filled(fam):
    texts = {render.render(c) for c in fam.candidates()}
    assert len(texts) == fam.space.size, "two candidates rendered the same text"
    assert not any("${" in text for text in texts)
    assert all(f"AIPERF_EXPORT int {fam.launcher}(" in text and f"{fam.launcher}_host_emulation(" in text
               for text in texts), "the launcher is the family's, whatever the candidate"


def test_parameters_are_typed_and_checked_against_their_choices():
    space = family("fused_add_rmsnorm").space
    good = {"THREADS": "256", "VEC": 8, "ROWS_PER_CTA": 1, "REDUCE": "warp_shuffle", "HOLD": "reread",
            "LOAD": "plain"}
    assert space.validate(good)["THREADS"] == 256
    with pytest.raises(ValueError, match=r"THREADS=96 is not one of \[64, 128, 256, 512, 1024\]"):
        space.validate({**good, "THREADS": 96})
    with pytest.raises(ValueError, match="THREADS takes an int"):
        space.validate({**good, "THREADS": "many"})
    with pytest.raises(ValueError, match=r"VEC=True is not one of"):
        space.validate({**good, "VEC": True})
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['WARPS'\]"):
        space.validate({**good, "WARPS": 4})
    with pytest.raises(ValueError, match=r"missing parameter\(s\) \['LOAD'\]"):
        space.validate({k: v for k, v in good.items() if k != "LOAD"})
    with pytest.raises(ValueError, match="NAME=VALUE pairs"):
        space.parse_assignments("THREADS:256")
    with pytest.raises(ValueError, match="all int or all str"):
        Param("MIXED", (1, "two"), "")


def test_a_candidate_is_named_by_every_parameter_and_found_by_its_name():
    fam = family("row_softmax")
    candidate = fam.candidate({"THREADS": 128, "VEC": 4, "ALGO": "online"})
    assert candidate.name == "row_softmax-width4096-THREADS128-VEC4-ALGOonline"
    assert fam.named(candidate.name) == candidate
    with pytest.raises(ValueError, match="names no candidate"):
        fam.named("row_softmax-width4096-THREADS96-VEC4-ALGOonline")


def _reasons(fam_name, target=None, **params):
    fam = family(fam_name)
    base = dict(fam.defaults[0])
    base.update(params)
    return " | ".join(constraints.static_reasons(fam, fam.candidate(base, target)))


def test_static_constraints_reject_with_the_reason_before_compiling():
    assert _reasons("fused_add_rmsnorm") == ""
    assert "VEC=8 does not divide hidden=4100" in _reasons("fused_add_rmsnorm", {"hidden": 4100})
    assert "THREADS*VEC=8192 > hidden=4096: lanes idle" in _reasons("fused_add_rmsnorm", THREADS=1024)
    assert "leaves 38% of lane slots idle at hidden=5120 (tail)" in _reasons("fused_add_rmsnorm", {"hidden": 5120},
                                                                           THREADS=512)
    assert "a CTA of 2048 threads" in _reasons("fused_add_rmsnorm", THREADS=512, ROWS_PER_CTA=4)
    assert "128 floats per lane" in _reasons("fused_add_rmsnorm", {"hidden": 8192}, THREADS=64, VEC=1)
    assert _reasons("row_softmax", ALGO="three_pass") == ""


def test_the_occupancy_formula_on_hopper():
    full = constraints.occupancy(threads=256, registers=32, smem_bytes=0)
    assert (full.ctas, full.fraction, full.limiter) == (8, 1.0, "warps")
    by_registers = constraints.occupancy(threads=1024, registers=64, smem_bytes=0)
    assert (by_registers.ctas, by_registers.fraction, by_registers.limiter) == (1, 0.5, "registers")
    heavy = constraints.occupancy(threads=128, registers=255, smem_bytes=0)  # 255 x 32 rounds up to 8192 per warp
    assert (heavy.ctas, heavy.fraction) == (2, 0.125)
    by_smem = constraints.occupancy(threads=128, registers=32, smem_bytes=100 * 1024)
    assert (by_smem.ctas, by_smem.limiter) == (2, "shared memory")
    tiny = constraints.occupancy(threads=32, registers=32, smem_bytes=0)
    assert (tiny.ctas, tiny.fraction, tiny.limiter) == (32, 0.5, "ctas")


PTXAS = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_ZN4anon6kernelILi8ELi2EEEvPv' for 'sm_90a'
ptxas info    : Function properties for _ZN4anon6kernelILi8ELi2EEEvPv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 32 bytes smem
ptxas info    : Compiling entry function '_ZN4anon6kernelILi1ELi0EEEvPv' for 'sm_90a'
ptxas info    : Function properties for _ZN4anon6kernelILi1ELi0EEEvPv
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 48 registers, used 1 barriers, 8 bytes cumulative stack size, 32 bytes smem
"""


def test_ptxas_report_rejects_a_spill_in_any_instance_and_reads_the_target_instances_registers():
    kernels = constraints.parse_ptxas(PTXAS)
    assert [(k.vec, k.held, k.registers, k.spills) for k in kernels] == [(8, 2, 40, False), (1, 0, 48, True)]
    fam = family("fused_add_rmsnorm")
    candidate = fam.candidate(fam.defaults[0])  # VEC 8, HELD 2 at hidden 4096
    reasons = constraints.compiled_reasons(fam, candidate, kernels)
    assert reasons == ["kernel<V=1, H=0> spills: 8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads"]
    assert constraints.compiled_reasons(fam, candidate, kernels[:1]) == []
    low = constraints.parse_ptxas(PTXAS.replace("Used 40 registers", "Used 255 registers"))[:1]
    assert constraints.compiled_reasons(fam, candidate, low) == [
        "occupancy 12% (1 CTAs of 256 threads per SM, limited by registers; 255 registers per thread, ptxas's count "
        "for kernel<V=8, H=2>) is under 25%"]
    assert constraints.compiled_reasons(fam, candidate, []) == [
        "ptxas reported no kernel instance (no -Xptxas -v output to judge)"]
