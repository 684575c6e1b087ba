"""The CUDA build: compiled by content, cached, parallel, and a broken source fails with the compiler's words.

These run wherever ``nvcc`` exists (CI has one); nothing here launches a kernel.
"""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import pytest

from pytest_aiperf import build

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").is_file(),
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


def test_a_source_builds_once_and_a_warm_build_reuses_the_library(workspace: Path) -> None:
    first = build.build(workspace / "fill.cu")
    stamp = first.stat().st_mtime_ns
    again = build.build(workspace / "fill.cu")
    assert again == first and again.stat().st_mtime_ns == stamp
    assert "sm_90a" in first.name


def test_editing_an_included_header_rebuilds_the_source(workspace: Path) -> None:
    first = build.build(workspace / "fill.cu")
    (workspace / "extra.cuh").write_text("#define EXTRA 1.0\n")
    second = build.build(workspace / "fill.cu")
    assert second != first and first.is_file() and second.is_file()


def test_a_source_that_does_not_compile_raises_with_the_compilers_message(workspace: Path) -> None:
    (workspace / "broken.cu").write_text('#include "aiperf.cuh"\nAIPERF_EXPORT int f(cudaStream_t s) { return x; }\n')
    with pytest.raises(build.BuildError, match=r"broken\.cu did not compile[\s\S]*identifier \"x\" is undefined"):
        build.build(workspace / "broken.cu")


def test_build_all_reports_each_sources_own_result(workspace: Path) -> None:
    (workspace / "broken.cu").write_text("this is not C++\n")
    results = build.build_all([workspace / "fill.cu", workspace / "broken.cu"], jobs=2)
    assert isinstance(results[(workspace / "fill.cu").resolve()], Path)
    assert isinstance(results[(workspace / "broken.cu").resolve()], build.BuildError)


def test_the_library_exports_the_error_string_of_the_calling_convention(workspace: Path) -> None:
    lib = ctypes.CDLL(str(build.build(workspace / "fill.cu")))
    lib.aiperf_error_string.restype = ctypes.c_char_p
    assert lib.aiperf_error_string(2) == b"out of memory"
    assert hasattr(lib, "fill_value")


def test_a_library_names_a_launcher_it_does_not_export(workspace: Path) -> None:
    library = build.CudaLibrary(workspace / "anything.py", "fill.cu")
    with pytest.raises(AttributeError, match="fill.cu exports no launcher 'missing'"):
        library.missing  # noqa: B018


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
