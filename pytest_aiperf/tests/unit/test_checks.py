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


def token_inputs(shape, dtype, seed, device):
    g = torch.Generator().manual_seed(seed)
    requests, positions, vocab = shape
    return (torch.randn(requests, positions, vocab, generator=g).to(device),)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(-1)


def token_param(optimized) -> CaseParam:
    case = Case(name="greedy_tokens", baseline=greedy, optimized=optimized, inputs=token_inputs,
                token_reference=lambda logits, tokens: logits, check_shapes=[(3, 5, 11)], time_shapes=[(8, 64, 512)])
    return case.params()[0]


def test_generated_tokens_are_checked_against_the_references_greedy_choice() -> None:
    report = verify(token_param(lambda logits: logits.float().argmax(-1)), "cpu")
    assert report.tokens["optimized"]["positions"] == 3 * 3 * 5
    assert report.tokens["optimized"]["compared"] + report.tokens["optimized"]["near_ties"] <= 45


def test_tokens_that_take_the_runner_up_fail_naming_where() -> None:
    with pytest.raises(CorrectnessError, match=r"optimized diverges from the reference's greedy choice in request 0 "
                                               r"at position 0: .*seed \d+, shape 3x5x11"):
        verify(token_param(lambda logits: logits.topk(2, -1).indices[..., 1]), "cpu")


def test_a_case_whose_only_output_is_tokens_never_runs_its_reference() -> None:
    def costly_reference(logits):
        raise AssertionError("a whole float64 replay that nothing reads")

    case = Case(name="greedy_tokens", baseline=greedy, optimized=greedy, inputs=token_inputs,
                reference=costly_reference, token_reference=lambda logits, tokens: logits,
                check_shapes=[(3, 5, 11)], time_shapes=[(8, 64, 512)])
    assert verify(case.params()[0], "cpu").tokens["baseline"]["positions"] == 45


def test_on_the_cpu_a_bf16_token_case_is_checked_again_in_fp32_where_a_late_wrong_token_shows() -> None:
    from pytest_aiperf.checks import coverage, torch_dtype, widened

    def noisy(shape, dtype, seed, device):  # logits whose top two lie 1% of their rms apart: a bf16 near-tie
        g = torch.Generator().manual_seed(seed)
        requests, positions, vocab = shape
        logits = torch.randn(requests, positions, vocab, generator=g)
        logits[..., 0] = logits.max(-1).values + 0.01
        return (logits.to(torch_dtype(dtype)),)

    def last_token_wrong(logits):
        tokens = logits.argmax(-1)
        tokens[:, -1] = (tokens[:, -1] + 1) % logits.shape[-1]
        return tokens

    case = Case(name="greedy_tokens", baseline=greedy, optimized=last_token_wrong, inputs=noisy,
                token_reference=lambda logits, tokens: logits, check_shapes=[(3, 5, 11)], time_shapes=[(8, 64, 512)],
                dtypes=["bf16"])
    narrow = verify(case.params()[0], "cpu")  # every request stops at a near-tie before its wrong last token
    assert narrow.tokens["optimized"]["near_ties"] == 9 and coverage(narrow).endswith("of 45 positions")
    with pytest.raises(CorrectnessError, match=r"optimized diverges .* at position 4"):
        widened(case.params()[0], "cpu")
    assert widened(token_param(greedy), "cpu") is None  # already fp32
