"""Correctness checks on the CPU: precision-changing pairs declare a tolerance, and both arms are held to it."""

from __future__ import annotations

import pytest
import torch

from pytest_aiperf import Case, Tolerance
from pytest_aiperf.cases import CaseParam
from pytest_aiperf.checks import CorrectnessError, verify

BF16 = Tolerance(rel=2e-2, reason="bf16 rounding of fp32 inputs")


def inputs(shape, dtype, seed, device):
    return (torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device),)


def bf16_round_trip(x: torch.Tensor) -> torch.Tensor:
    return 2 * x.to(torch.bfloat16).to(x.dtype)


def param(baseline, optimized, tolerance=BF16) -> CaseParam:
    case = Case(name="doubling", baseline=baseline, optimized=optimized, inputs=inputs, reference=lambda x: 2 * x,
                check_shapes=[(257,)], time_shapes=[(4096,)], tolerance=tolerance)
    return case.params()[0]


def test_a_precision_change_inside_its_declared_tolerance_passes() -> None:
    report = verify(param(lambda x: 2 * x, bf16_round_trip), "cpu")
    assert 0 < report.err_optimized <= BF16.rel and report.err_baseline < 1e-6, report


def test_the_same_precision_change_without_a_declared_tolerance_fails() -> None:
    with pytest.raises(CorrectnessError, match="optimized disagrees with the float64 reference"):
        verify(param(lambda x: 2 * x, bf16_round_trip, tolerance=None), "cpu")


def test_a_wrong_baseline_fails_even_when_the_pair_declares_a_tolerance() -> None:
    with pytest.raises(CorrectnessError, match="baseline disagrees with the float64 reference: relative error 0.5"):
        verify(param(lambda x: 3 * x, bf16_round_trip), "cpu")


def test_a_wrong_optimized_arm_fails_its_declared_tolerance() -> None:
    with pytest.raises(CorrectnessError, match=r"optimized disagrees .* relative error 0.05 > bound 0.02"):
        verify(param(lambda x: 2 * x, lambda x: 2.1 * x), "cpu")
