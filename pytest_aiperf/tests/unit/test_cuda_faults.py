"""Which CUDA errors poison the process's context (every later case then fails at once)."""

from __future__ import annotations

import pytest

from pytest_aiperf.build import CudaError
from pytest_aiperf.pipeline import sticky_cuda_error


@pytest.mark.parametrize("text", ["CUDA error: an illegal memory access was encountered",
                                  "tiled_transpose.cu:transpose_tiled: unspecified launch failure (CUDA error 719)",
                                  "CUDA error: device-side assert triggered", "misaligned address"])
def test_context_poisoning_errors_are_sticky(text: str) -> None:
    assert sticky_cuda_error(RuntimeError(text))


@pytest.mark.parametrize("text", ["CUDA out of memory. Tried to allocate 2.00 GiB",
                                  "copy.cu:copy_vec4: invalid configuration argument (CUDA error 9)",
                                  "non-finite output at index 3"])
def test_errors_a_process_recovers_from_are_not_sticky(text: str) -> None:
    assert not sticky_cuda_error(RuntimeError(text))


def test_a_sticky_cause_behind_another_error_is_found() -> None:
    try:
        try:
            raise CudaError("row_filter.cu:filter: an illegal memory access was encountered (CUDA error 700)")
        except CudaError as inner:
            raise AssertionError("correctness check failed") from inner
    except AssertionError as outer:
        assert sticky_cuda_error(outer)
