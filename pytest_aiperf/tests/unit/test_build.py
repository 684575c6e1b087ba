"""The CUDA build: compiled by content, cached, parallel, compiled once across processes, and a broken source
fails with the compiler's words.

The ``needs_nvcc`` tests run wherever ``nvcc`` exists (CI has one); the others drive a fake compiler (a script
named by ``$CUDACXX`` that counts its runs). Nothing here launches a kernel.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_aiperf import build, workers

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").is_file(),
                                reason="needs nvcc")

FILL = """#include "aiperf.cuh"
#include "extra.cuh"
__global__ void fill(float* y, double v, int64_t n) {
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) y[i] = (float)(v + EXTRA);
}
AIPERF_EXPORT int fill_value(float* y, double v, int64_t n, cudaStream_t s) {
  fill<<<(n + 255) / 256, 256, 0, s>>>(y, v, n);
  AIPERF_RETURN_LAUNCH_ERROR();
}
"""


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIPERF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AIPERF_CUDA_ARCH", "sm_90a")
    (tmp_path / "fill.cu").write_text(FILL)
    (tmp_path / "extra.cuh").write_text("#define EXTRA 0.0\n")
    return tmp_path


@needs_nvcc
def test_a_source_builds_once_and_a_warm_build_reuses_the_library(workspace: Path) -> None:
    first = build.build(workspace / "fill.cu")
    stamp = first.stat().st_mtime_ns
    again = build.build(workspace / "fill.cu")
    assert again == first and again.stat().st_mtime_ns == stamp
    assert "sm_90a" in first.name


@needs_nvcc
def test_editing_an_included_header_rebuilds_the_source(workspace: Path) -> None:
    first = build.build(workspace / "fill.cu")
    (workspace / "extra.cuh").write_text("#define EXTRA 1.0\n")
    second = build.build(workspace / "fill.cu")
    assert second != first and first.is_file() and second.is_file()


@needs_nvcc
def test_a_source_that_does_not_compile_raises_with_the_compilers_message(workspace: Path) -> None:
    (workspace / "broken.cu").write_text('#include "aiperf.cuh"\nAIPERF_EXPORT int f(cudaStream_t s) { return x; }\n')
    with pytest.raises(build.BuildError, match=r"broken\.cu did not compile[\s\S]*identifier \"x\" is undefined"):
        build.build(workspace / "broken.cu")


@needs_nvcc
def test_build_all_reports_each_sources_own_result(workspace: Path) -> None:
    (workspace / "broken.cu").write_text("this is not C++\n")
    results = build.build_all([workspace / "fill.cu", workspace / "broken.cu"], jobs=2)
    assert isinstance(results[(workspace / "fill.cu").resolve()], Path)
    assert isinstance(results[(workspace / "broken.cu").resolve()], build.BuildError)


@needs_nvcc
def test_the_library_exports_the_error_string_of_the_calling_convention(workspace: Path) -> None:
    lib = ctypes.CDLL(str(build.build(workspace / "fill.cu")))
    lib.aiperf_error_string.restype = ctypes.c_char_p
    assert lib.aiperf_error_string(2) == b"out of memory"
    assert hasattr(lib, "fill_value")


@needs_nvcc
def test_a_library_names_a_launcher_it_does_not_export(workspace: Path) -> None:
    library = build.CudaLibrary(workspace / "anything.py", "fill.cu")
    with pytest.raises(AttributeError, match="fill.cu exports no launcher 'missing'"):
        library.missing  # noqa: B018


@needs_nvcc
def test_a_library_that_failed_to_build_fails_every_use_with_the_same_error(workspace: Path) -> None:
    (workspace / "bad.cu").write_text("int broken(\n")
    library = build.CudaLibrary(workspace / "anything.py", "bad.cu")
    for _ in range(2):
        with pytest.raises(build.BuildError, match="bad.cu did not compile"):
            library.launch  # noqa: B018


def test_a_missing_compiler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CUDACXX", "")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "none"))
    with pytest.raises(build.BuildError, match="nvcc not found"):
        build.nvcc()


FAKE_NVCC = """#!{python}
import sys, time
from pathlib import Path

if sys.argv[1:] == ["--version"]:
    print("fake nvcc 1.0")
    sys.exit(0)
with open({log!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
time.sleep(1.0)
source = Path(sys.argv[-1])
if "#error" in source.read_text():
    sys.exit(f"fake nvcc: {{source.name}} has an #error")
output = Path(sys.argv[sys.argv.index("-o") + 1])
output.write_text(f"library of {{source.name}}")
"""

CHILD = """
import sys, time
from pathlib import Path
from pytest_aiperf import build

go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
try:
    print(build.build(Path(sys.argv[1])))
except build.BuildError as exc:
    print(f"BuildError: {exc}")
"""


@pytest.fixture()
def fake_nvcc(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A compiler that takes a second, writes the ``-o`` file (or fails on ``#error``) and logs each compile to
    the returned file; ``$CUDACXX`` names it for this process and the children it starts."""
    log = workspace / "compiles.log"
    log.touch()
    script = workspace / "fake-nvcc"
    script.write_text(FAKE_NVCC.format(python=sys.executable, log=str(log)))
    script.chmod(0o755)
    monkeypatch.setenv("CUDACXX", str(script))
    return log


def start_child(source: Path, go: Path) -> subprocess.Popen:
    """A process that builds ``source`` once ``go`` exists, and prints the library's path or the BuildError."""
    root = str(Path(build.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(source), str(go)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(child: subprocess.Popen, timeout: float = 60) -> str:
    """The child's output; a child still building after ``timeout`` waits on a lock nobody releases."""
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        pytest.fail(f"the build was still waiting after {timeout} s (a lock left held?):\n{out}\n{err}")
    assert child.returncode == 0, f"child exited {child.returncode}:\n{out}\n{err}"
    return out.strip()


def test_two_processes_building_the_same_source_at_once_run_the_compiler_once(workspace: Path,
                                                                              fake_nvcc: Path) -> None:
    go = workspace / "go"
    children = [start_child(workspace / "fill.cu", go) for _ in range(2)]
    go.touch()
    outputs = [finish(child) for child in children]
    compiles = fake_nvcc.read_text().splitlines()
    assert len(compiles) == 1, f"the compiler ran {len(compiles)} times:\n" + "\n".join(compiles)
    assert outputs[0] == outputs[1] and Path(outputs[0]).read_text() == "library of fill.cu", outputs[0]
    assert Path(outputs[0]).parent == build.cache_dir(), outputs


def test_a_failed_compile_releases_the_lock_so_the_next_build_of_the_source_runs(workspace: Path,
                                                                                fake_nvcc: Path) -> None:
    (workspace / "bad.cu").write_text("#error broken\n")
    with pytest.raises(build.BuildError, match=r"bad.cu did not compile[\s\S]*has an #error"):
        build.build(workspace / "bad.cu")
    go = workspace / "go"
    go.touch()
    output = finish(start_child(workspace / "bad.cu", go), timeout=30)
    assert output.startswith("BuildError: bad.cu did not compile"), output
    assert len(fake_nvcc.read_text().splitlines()) == 2, fake_nvcc.read_text()


def test_a_compile_past_the_timeout_releases_the_lock_and_leaves_no_partial_library(
        workspace: Path, fake_nvcc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "TIMEOUT_S", 0.2)
    with pytest.raises(build.BuildError, match="fill.cu: nvcc ran longer than 0.2 s"):
        build.build(workspace / "fill.cu")
    leftovers = sorted(p.name for p in build.cache_dir().iterdir() if not p.name.endswith(".lock"))
    assert leftovers == [], leftovers
    go = workspace / "go"
    go.touch()
    output = finish(start_child(workspace / "fill.cu", go), timeout=30)
    assert Path(output).is_file(), output


SOURCES = [Path(f"/kernels/{name}.cu") for name in "abcdefgh"]


def test_each_worker_starts_its_build_at_a_different_source_and_still_builds_them_all() -> None:
    orders = [build.build_order(reversed(SOURCES), {workers.SLOT_ENV: f"{i}/4"}) for i in range(4)]
    assert [order[0].name for order in orders] == ["a.cu", "c.cu", "e.cu", "g.cu"], orders
    assert all(order == SOURCES[SOURCES.index(order[0]):] + SOURCES[:SOURCES.index(order[0])] for order in orders)
    few = [build.build_order(SOURCES[:2], {workers.SLOT_ENV: f"{i}/4"}) for i in range(4)]
    assert all(sorted(order) == SOURCES[:2] for order in few), few


@pytest.mark.parametrize("value", [None, "", "garbage", "4/4", "-1/4", "1/0", "1/2/3", "1.5/4"])
def test_outside_a_pinned_worker_or_with_a_malformed_slot_sources_build_in_sorted_order(value) -> None:
    environ = {} if value is None else {workers.SLOT_ENV: value}
    assert build.build_order(reversed(SOURCES), environ) == SOURCES


def test_parallel_compiles_default_to_the_cpus_this_process_may_run_on(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5})
    assert build.usable_cpus() == 2
