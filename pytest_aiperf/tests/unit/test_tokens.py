"""Generated tokens against the reference's greedy choice, with the near-tie rule."""

from __future__ import annotations

import pytest
import torch

from pytest_aiperf.tokens import TIE_FACTOR, TokenMismatch, compare


def logits_choosing(choices: list[list[int]], vocab: int = 8, gap: float = 4.0) -> torch.Tensor:
    """Reference logits whose argmax at [r, t] is ``choices[r][t]``, ``gap`` above every other logit (all 0)."""
    out = torch.zeros(len(choices), len(choices[0]), vocab, dtype=torch.float64)
    for r, row in enumerate(choices):
        for t, token in enumerate(row):
            out[r, t, token] = gap
    return out


def test_tokens_that_are_the_greedy_choice_everywhere_pass_and_every_position_is_compared() -> None:
    report = compare("optimized", torch.tensor([[1, 2, 3], [4, 5, 6]]), logits_choosing([[1, 2, 3], [4, 5, 6]]), 3e-2)
    assert (report.compared, report.near_ties) == (6, ())


def test_a_token_that_is_not_the_greedy_choice_fails_naming_request_and_position() -> None:
    with pytest.raises(TokenMismatch, match=r"optimized diverges .* in request 1 at position 2: generated 7, "
                                            r"reference argmax 6"):
        compare("optimized", torch.tensor([[1, 2, 3], [4, 5, 7]]), logits_choosing([[1, 2, 3], [4, 5, 6]]), 3e-2)


def test_a_near_tie_stops_the_comparison_of_that_request_and_is_reported() -> None:
    logits = logits_choosing([[1, 2, 3], [4, 5, 6]])
    logits[0, 1, 7] = logits[0, 1, 2] - 1e-6  # two candidates closer than bf16 resolves at position 1
    report = compare("baseline", torch.tensor([[1, 7, 0], [4, 5, 6]]), logits, 3e-2)
    assert report.compared == 1 + 3
    (request, position, gap, band), = report.near_ties
    assert (request, position) == (0, 1) and gap < band
    assert band == pytest.approx(TIE_FACTOR * 3e-2 * float(logits[0, 1].pow(2).mean().sqrt()))


def test_a_divergence_before_the_near_tie_still_fails() -> None:
    logits = logits_choosing([[1, 2, 3]])
    logits[0, 2, 0] = logits[0, 2, 3]
    with pytest.raises(TokenMismatch, match="request 0 at position 0"):
        compare("optimized", torch.tensor([[0, 2, 3]]), logits, 3e-2)


def test_float_outputs_are_not_tokens() -> None:
    with pytest.raises(TokenMismatch, match="expected integer token ids"):
        compare("optimized", torch.zeros(2, 3), logits_choosing([[1, 2, 3], [4, 5, 6]]), 3e-2)
