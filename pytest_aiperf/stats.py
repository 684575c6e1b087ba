"""Pure statistics over paired timing samples: arm summaries, the speedup and its bootstrap interval,
the noise margin a recording should carry, and the side-stream cross-check.

Samples are per-call times in milliseconds. Baseline and optimized are measured in interleaved rounds,
so ``base_ms[i]`` and ``opt_ms[i]`` come from the same round ``i``: they share whatever the machine was
doing at that moment (clock ramps, a neighbour's job), and every estimate here keeps rounds paired so that
such shared drift cancels in the ratio instead of widening it. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class ArmStats:
    """Order statistics of one arm's per-call times, in ms."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    n: int


@dataclass(frozen=True)
class SpeedupEstimate:
    """``speedup = median(baseline) / median(optimized)`` with its paired bootstrap interval ``[lo, hi]``."""

    speedup: float
    lo: float
    hi: float
    confidence: float
    rounds: int

    @property
    def half_width_rel(self) -> float:
        """Half the interval's width relative to the estimate: 0.02 means roughly +-2%."""
        return (self.hi - self.lo) / 2 / self.speedup


def arm_stats(samples_ms: Sequence[float]) -> ArmStats:
    """Median, quartiles (linear interpolation), extremes and count of one arm's samples."""
    samples = np.asarray(samples_ms, dtype=np.float64)
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError("arm_stats needs a non-empty, flat sequence of samples")
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return ArmStats(
        median_ms=float(median),
        q1_ms=float(q1),
        q3_ms=float(q3),
        min_ms=float(samples.min()),
        max_ms=float(samples.max()),
        n=int(samples.size),
    )


def _paired(base_ms: Sequence[float], opt_ms: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Both arms as float64 arrays, after checking they are paired, long enough, finite and positive."""
    base = np.asarray(base_ms, dtype=np.float64)
    opt = np.asarray(opt_ms, dtype=np.float64)
    if base.ndim != 1 or opt.ndim != 1:
        raise ValueError("samples must be flat sequences of per-call times")
    if base.size != opt.size:
        raise ValueError(f"arms are paired by round but have different lengths: baseline {base.size}, "
                         f"optimized {opt.size}")
    if base.size < 2:
        raise ValueError(f"need at least 2 rounds to estimate a speedup, got {base.size}")
    for name, arm in (("baseline", base), ("optimized", opt)):
        if not np.all(np.isfinite(arm)):
            raise ValueError(f"{name} samples contain a non-finite time (nan or inf)")
        if not np.all(arm > 0):
            raise ValueError(f"{name} samples contain a time <= 0 ms (minimum {arm.min()!r}): a timer that "
                             "did not run")
    return base, opt


def _resampled_medians(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``np.median(values[idx], axis=1)``, computed on small integer ranks: about twice as fast."""
    n = values.size
    order = np.argsort(values, kind="stable")
    rank = np.empty(n, dtype=np.int16 if n <= np.iinfo(np.int16).max else np.int32)
    rank[order] = np.arange(n)
    middle = [(n - 1) // 2, n // 2]
    picked = np.partition(rank[idx], middle, axis=1)[:, middle]
    ordered = values[order]
    return (ordered[picked[:, 0]] + ordered[picked[:, 1]]) / 2


def speedup_ci(base_ms: Sequence[float], opt_ms: Sequence[float], *, confidence: float = 0.95,
               resamples: int = 2000, seed: int = 0) -> SpeedupEstimate:
    """Ratio of medians with a paired percentile bootstrap interval over rounds.

    Each resample draws round indices with replacement and applies the same indices to both arms, so a
    round's shared conditions stay together. The percentile interval is widened, if needed, to contain the
    point estimate: with few rounds the median is lumpy and a percentile interval can miss it, and a gate
    must never see an interval that disagrees with the number it reports. Deterministic for a given seed.
    """
    if not (0 < confidence < 1):
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    base, opt = _paired(base_ms, opt_ms)
    n = base.size
    speedup = float(np.median(base) / np.median(opt))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n), dtype=np.int32)
    ratios = _resampled_medians(base, idx) / _resampled_medians(opt, idx)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(ratios, [tail, 1 - tail])
    return SpeedupEstimate(
        speedup=speedup,
        lo=min(float(lo), speedup),
        hi=max(float(hi), speedup),
        confidence=float(confidence),
        rounds=int(n),
    )


def block_speedups(base_ms: Sequence[float], opt_ms: Sequence[float], blocks: int = 8) -> list[float]:
    """Ratio of medians in each of ``blocks`` consecutive, near-equal blocks of rounds.

    Fewer blocks are used when there are fewer than ``2 * blocks`` rounds, so every block holds at least
    two rounds; earlier blocks take the extra round when the split is uneven.
    """
    if blocks < 1:
        raise ValueError(f"blocks must be at least 1, got {blocks}")
    base, opt = _paired(base_ms, opt_ms)
    count = max(1, min(blocks, base.size // 2))
    return [float(np.median(b) / np.median(o))
            for b, o in zip(np.array_split(base, count), np.array_split(opt, count))]


def noise_margin(base_ms: Sequence[float], opt_ms: Sequence[float], *, floor: float = 0.03, k: float = 3.0,
                 blocks: int = 8, estimate: SpeedupEstimate | None = None) -> float:
    """The relative margin an expectation recorded from this run should carry.

    ``max(floor, k * robust_sd(block speedups) / median(block speedups), 2 * half_width_rel(CI))``, with
    ``robust_sd = 1.4826 * MAD``. The blocks are independent stretches of the same run, so their spread
    shows how far one shorter measurement of this case wanders (MAD, so one bad block does not set it).
    The CI term covers the uncertainty of the recorded value itself. Neither can see run-to-run drift
    (another boot, another clock state, another GPU of the same model), which one run cannot observe:
    the floor covers that. ``estimate`` reuses an already computed ``speedup_ci`` of the same samples.
    """
    if floor < 0 or k < 0:
        raise ValueError(f"floor and k must be non-negative, got floor={floor}, k={k}")
    per_block = np.asarray(block_speedups(base_ms, opt_ms, blocks), dtype=np.float64)
    centre = float(np.median(per_block))
    robust_sd = MAD_TO_SD * float(np.median(np.abs(per_block - centre)))
    est = estimate if estimate is not None else speedup_ci(base_ms, opt_ms)
    return float(max(floor, k * robust_sd / centre, 2 * est.half_width_rel))


def format_ms(value: float) -> str:
    """A time in ms with three significant digits (``0.412``, ``1.01``, ``25.3``), whole ms from 1000 up."""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def side_stream_suspect(event_ms: Sequence[float], wall_ms: Sequence[float], *, ratio: float = 0.5,
                        min_gap_ms: float = 0.05) -> str | None:
    """A message when device events report far less time than the synchronized wall clock, else None.

    Work launched on a side stream that is not joined before the end event runs outside the event pair,
    so the events undercount it while the synchronized host clock still waits for it. Small kernels have
    a wall time dominated by ~10-30 us of synchronization latency, so a large ratio alone is not enough:
    the absolute gap must also exceed ``min_gap_ms``.
    """
    if len(event_ms) == 0 or len(wall_ms) == 0:
        raise ValueError("side_stream_suspect needs event and wall samples")
    event = float(np.median(np.asarray(event_ms, dtype=np.float64)))
    wall = float(np.median(np.asarray(wall_ms, dtype=np.float64)))
    if event < ratio * wall and wall - event > min_gap_ms:
        return (f"device events report {format_ms(event)} ms per call but the synchronized wall clock reports "
                f"{format_ms(wall)} ms: work on a side stream not joined before the end event is not being "
                "timed; join it (torch.cuda.current_stream().wait_stream(side)) inside the variant")
    return None
