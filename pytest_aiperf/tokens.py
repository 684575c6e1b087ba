"""Generated tokens against the reference's greedy choice, with a rule for near-ties.

An arm that generates tokens is right when each token is the reference's argmax at its position, given the arm's own
tokens before it (teacher forcing: the reference's float64 logits at every position of the candidate sequence). Where
the reference's two best logits are closer than the arm's precision can resolve, either token is a correct greedy
choice in that precision, and every later position depends on which one was taken: the comparison of that request
stops there, and the report says where. The band is ``TIE_FACTOR x bound x rms(logits)`` of the position: the dtype's
relative error bound (``checks.BOUND``) scaled by the logits' magnitude. Pure torch on whatever device the tensors
are on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TIE_FACTOR = 2.0


class TokenMismatch(AssertionError):
    """A generated token differs from the reference's greedy choice at a position the precision can resolve."""


@dataclass(frozen=True)
class TokenReport:
    """What a token comparison covered: ``compared`` positions of ``requests`` x ``positions``, and the requests whose
    comparison stopped at a near-tie, as ``(request, position, gap, band)``."""

    requests: int
    positions: int
    compared: int
    near_ties: tuple[tuple[int, int, float, float], ...]

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "positions": self.positions, "compared": self.compared,
                "near_ties": [list(tie) for tie in self.near_ties]}


def compare(label: str, tokens: Any, logits: Any, bound: float) -> TokenReport:
    """Check ``tokens`` ``[requests, positions]`` against the reference ``logits`` ``[requests, positions, vocab]``;
    raise ``TokenMismatch`` naming the first request and position that differ before any near-tie."""
    import torch

    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
        raise TokenMismatch(f"{label} returned {getattr(tokens, 'shape', type(tokens).__name__)} as its tokens: "
                            "expected integer token ids [requests, positions]")
    if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(tokens.shape):
        raise TokenMismatch(f"the token reference returned logits {tuple(logits.shape)} for {label}'s tokens "
                            f"{tuple(tokens.shape)}: expected [requests, positions, vocab]")
    logits = logits.detach().to(torch.float64)
    tokens = tokens.detach().to(device=logits.device, dtype=torch.long)
    top = logits.topk(2, dim=-1)
    choice, gap = top.indices[..., 0], top.values[..., 0] - top.values[..., 1]
    band = TIE_FACTOR * bound * logits.pow(2).mean(dim=-1).sqrt()
    requests, positions = tokens.shape
    compared, ties = 0, []
    for r in range(requests):
        tied = (gap[r] < band[r]).nonzero()
        stop = int(tied[0]) if tied.numel() else positions
        wrong = (tokens[r, :stop] != choice[r, :stop]).nonzero()
        if wrong.numel():
            t = int(wrong[0])
            raise TokenMismatch(
                f"{label} diverges from the reference's greedy choice in request {r} at position {t}: generated "
                f"{int(tokens[r, t])}, reference argmax {int(choice[r, t])} (its top-two gap {float(gap[r, t]):.4g} is "
                f"above the near-tie band {float(band[r, t]):.4g})")
        compared += stop
        if stop < positions:
            ties.append((r, stop, float(gap[r, stop]), float(band[r, stop])))
    return TokenReport(requests, positions, compared, tuple(ties))
