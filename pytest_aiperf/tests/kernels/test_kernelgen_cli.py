"""``python -m kernels.ch20.kernelgen``: ``--emit PATH`` writes a candidate that compiles (sm_90a, no spills),
passes the checks on the CPU and exports the family's launcher, so a case loads it unchanged; it picks the
promoted kernel from the registry and refuses one whose template changed; it exits 1 with every reason when
nothing compiles, and 2 on a usage error. Needs nvcc (no GPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernels.ch20.kernelgen import registry, render, verification
from kernels.ch20.kernelgen.__main__ import main
from kernels.ch20.kernelgen.families import family
from pytest_aiperf import build, checks

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").is_file(),
                                reason="needs nvcc")
ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).resolve().parent / "kernelgen_golden"


@pytest.fixture()
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The run's shared kernelgen build cache (as in test_kernelgen_compile), sm_90a as the target."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    monkeypatch.setenv("AIPERF_CACHE_DIR", str(root / "kernelgen-cache"))
    monkeypatch.setenv("AIPERF_CUDA_ARCH", "sm_90a")
    return root / "kernelgen-cache"


@needs_nvcc
def test_emit_writes_a_default_that_compiles_and_plugs_into_the_case_unchanged(cache, tmp_path):
    out = tmp_path / "out" / "test.cu"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "kernels.ch20.kernelgen", "--emit", str(out), "--family",
                           "fused_add_rmsnorm", "--registry", str(tmp_path / "none.json")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    fam = family("fused_add_rmsnorm")
    head = render.read_header(out.read_text())
    assert head["candidate"] == fam.candidate(fam.defaults[0]).name and "(default (unmeasured" in done.stdout
    library = build.build(out)  # what CudaLibrary(case_file, "test.cu") builds: a cache hit, same content key
    call = verification.host_call(library, f"{fam.launcher}_host_emulation")
    case = fam.case(fam.arm(call), dict(fam.target), needs_cuda=False)
    checks.verify(case.params()[0], "cpu")
    assert f"AIPERF_EXPORT int {fam.launcher}(bf16* y, bf16* residual_out" in out.read_text()


@needs_nvcc
def test_emit_of_named_params_and_the_render_command_agree_with_the_golden_file(cache, tmp_path, capsys):
    fam = family("row_softmax")
    candidate = fam.candidate(fam.defaults[1])
    assert main(["--emit", str(tmp_path / "softmax.cu"), "--family", "row_softmax", "--params",
                 "THREADS=128,VEC=4,ALGO=online"]) == 0
    assert f"emitted {candidate.name} (named)" in capsys.readouterr().out
    golden = (GOLDEN / f"{candidate.name}.cu").read_text()
    assert (tmp_path / "softmax.cu").read_text() == golden
    assert main(["render", "--family", "row_softmax", "--candidate", candidate.name]) == 0
    assert capsys.readouterr().out == golden


@needs_nvcc
def test_emit_takes_the_promoted_kernel_and_refuses_one_from_a_changed_template(cache, tmp_path, capsys):
    fam = family("row_softmax")
    promoted = fam.candidate(fam.defaults[1])
    path = tmp_path / "REGISTRY.json"
    record = {"family": fam.name, "target": dict(fam.target), "hardware": "h200", "candidate": promoted.name,
              "params": promoted.values, "template_sha256": fam.template_sha256}
    registry.promote(record, path)
    assert main(["--emit", str(tmp_path / "a.cu"), "--family", fam.name, "--registry", str(path)]) == 0
    assert f"emitted {promoted.name} (promoted)" in capsys.readouterr().out
    registry.promote({**record, "template_sha256": "f" * 64}, path)
    assert main(["--emit", str(tmp_path / "b.cu"), "--family", fam.name, "--registry", str(path)]) == 1
    assert "search again" in capsys.readouterr().err and not (tmp_path / "b.cu").exists()


def test_emit_exits_1_with_every_reason_when_nothing_compiles(cache, tmp_path, monkeypatch, capsys):
    compiler = tmp_path / "broken-nvcc"
    compiler.write_text("#!/bin/sh\necho 'broken-nvcc: no device compiler here' >&2\nexit 1\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CUDACXX", str(compiler))
    monkeypatch.setenv("AIPERF_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["--emit", str(tmp_path / "x.cu"), "--family", "row_softmax", "--registry",
                 str(tmp_path / "none.json")]) == 1
    err = capsys.readouterr().err
    assert "nothing to emit, no candidate passed" in err and err.count("broken-nvcc: no device compiler here") == 2
    assert not (tmp_path / "x.cu").exists()


def test_usage_errors_exit_2_with_the_reason(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--emit", "x.cu", "--family", "row_softmax", "--params", "THREADS=96,VEC=4,ALGO=online"])
    assert exc.value.code == 2 and "THREADS=96 is not one of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["render", "--family", "row_softmax"])
    assert exc.value.code == 2 and "render needs --params or --candidate" in capsys.readouterr().err


def test_search_says_it_needs_a_gpu_where_there_is_none(cache, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: search would run")
    assert main(["search", "--family", "row_softmax"]) == 1
    assert "search times candidates on a GPU: none is visible here" in capsys.readouterr().out


def test_list_names_every_family_with_its_space(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "fused_add_rmsnorm: 720 candidates, 564 pass" in out and "row_softmax: 60 candidates, 57 pass" in out
    assert json.dumps(["registers", "online", "three_pass"]).replace('"', "'") in out


def test_emit_refuses_a_candidate_the_static_constraints_reject_before_compiling(cache, tmp_path, capsys):
    assert main(["--emit", str(tmp_path / "t.cu"), "--family", "fused_add_rmsnorm", "--target", "hidden=5120",
                 "--params", "THREADS=512,VEC=8,ROWS_PER_CTA=1,REDUCE=smem_tree,HOLD=reread,LOAD=plain"]) == 1
    assert "leaves 38% of lane slots idle at hidden=5120 (tail)" in capsys.readouterr().err
    assert not (tmp_path / "t.cu").exists()
