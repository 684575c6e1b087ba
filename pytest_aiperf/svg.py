"""The HTML report's charts, as plain SVG text: a speedup's interval against its band, a sparkline of recorded
speedups, the roofline and the bandwidth chart. Pure: numbers and labels in, markup out; every label is escaped.
Colours name the verdict through CSS classes (``v-PASS``...), so the page's stylesheet, print included, sets them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Callable, Sequence

Point = tuple[float, float]


@dataclass(frozen=True)
class Pair:
    """Both arms of one case on a chart: ``baseline`` and ``optimized`` in data units, and what their titles say."""

    label: str
    verdict: str
    baseline: Point
    optimized: Point
    baseline_note: str
    optimized_note: str


@dataclass(frozen=True)
class Roof:
    """A measured ceiling drawn as a polyline in data units, labelled after its last point (``at_start``: above its
    first point)."""

    label: str
    points: Sequence[Point]
    at_start: bool = False


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def interval(speedup: float, lo: float | None, hi: float | None, *, band: tuple[float, float | None] | None,
             floor: float | None, expected: float | None, verdict: str, title: str) -> str:
    """The speedup (dot) and its confidence interval (bar) on a log axis, over the gate's band (shaded; open to the
    right for a floor), the expected speedup (tick) and the ``min_speedup`` floor (dashed)."""
    width, height = 200, 24
    known = [v for v in (speedup, lo, hi, expected, floor, *(band or ())) if v is not None and v > 0]
    left, right = math.log(min(known) / 1.25), math.log(max(known) * 1.25)

    def x(value: float) -> float:
        return 4 + (width - 8) * (math.log(value) - left) / (right - left)

    parts = [f'<svg class="iv" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
             _title(title)]
    if band is not None:
        start, end = x(band[0]), x(band[1]) if band[1] is not None else width
        parts.append(f'<rect class="band" x="{_n(start)}" y="5" width="{_n(max(end - start, 1))}" height="14"/>')
    if expected is not None:
        parts.append(f'<line class="exp" x1="{_n(x(expected))}" x2="{_n(x(expected))}" y1="5" y2="19"/>')
    if floor is not None:
        parts.append(f'<line class="floor" x1="{_n(x(floor))}" x2="{_n(x(floor))}" y1="2" y2="22"/>')
    if lo is not None and hi is not None:
        parts.append(f'<line class="ci v-{escape(verdict)}" x1="{_n(x(lo))}" x2="{_n(x(hi))}" y1="12" y2="12"/>')
    parts.append(f'<circle class="v-{escape(verdict)}" cx="{_n(x(speedup))}" cy="12" r="3.5"/></svg>')
    return "".join(parts)


def sparkline(history: Sequence[tuple[float, str]], current: tuple[float, str, str] | None) -> str:
    """Recorded speedups in recording order (``(speedup, title)``), joined by a line, and this run's speedup
    (``(speedup, title, verdict)``) as an open dot after them."""
    width, height = 110, 24
    values = [v for v, _ in history] + ([current[0]] if current else [])
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or max(high, 1e-9)
    count = len(values)

    def at(index: int, value: float) -> Point:
        x = 5 + (width - 10) * (index / (count - 1) if count > 1 else 0.5)
        return x, height - 5 - (height - 10) * ((value - low) / span if high > low else 0.5)

    points = [at(i, v) for i, (v, _) in enumerate(history)]
    parts = [f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    if len(points) > 1:
        parts.append('<polyline points="' + " ".join(f"{_n(x)},{_n(y)}" for x, y in points) + '"/>')
    for (x, y), (_, title) in zip(points, history):
        parts.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2">{_title(title)}</circle>')
    if current is not None:
        x, y = at(count - 1, current[0])
        parts.append(f'<circle class="now v-{escape(current[2])}" cx="{_n(x)}" cy="{_n(y)}" r="3">'
                     f'{_title(current[1])}</circle>')
    return "".join(parts) + "</svg>"


def _decades(values: Sequence[float]) -> tuple[float, float]:
    """Log10 bounds of a decade-aligned axis that holds every positive value."""
    logs = [math.log10(v) for v in values if v > 0]
    low, high = math.floor(min(logs)), math.ceil(max(logs))
    return (low, high + 1) if low == high else (low, high)


def _decimal(value: float) -> str:
    return f"{value:g}" if 1e-3 <= value < 1e5 else f"1e{round(math.log10(value))}"


def _bytes(value: float) -> str:
    exponent = round(math.log10(value))
    for step, unit in ((12, "TB"), (9, "GB"), (6, "MB"), (3, "kB"), (0, "B")):
        if exponent >= step:
            return f"{10 ** (exponent - step)} {unit}"
    return f"{value:g} B"


def _plot(pairs: Sequence[Pair], roofs: Sequence[Roof], xr: tuple[float, float], yr: tuple[float, float], *,
          x_label: str, y_label: str, title: str, x_ticks: Callable[[float], str] = _decimal) -> str:
    """A log-log chart: roofs, then each pair as an arrow from its baseline (open dot) to its optimized arm."""
    width, height, left, right, top, bottom = 680, 380, 62, 120, 16, 44

    def x(value: float) -> float:
        return left + (width - left - right) * (math.log10(value) - xr[0]) / (xr[1] - xr[0])

    def y(value: float) -> float:
        return height - bottom - (height - top - bottom) * (math.log10(value) - yr[0]) / (yr[1] - yr[0])

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
             _title(title), f'<rect class="frame" x="{left}" y="{top}" width="{width - left - right}" '
             f'height="{height - top - bottom}"/>']
    for exponent in range(int(xr[0]), int(xr[1]) + 1):
        at = _n(x(10.0 ** exponent))
        parts.append(f'<line class="grid" x1="{at}" x2="{at}" y1="{top}" y2="{height - bottom}"/>'
                     f'<text x="{at}" y="{height - bottom + 14}" text-anchor="middle">'
                     f'{escape(x_ticks(10.0 ** exponent))}</text>')
    for exponent in range(int(yr[0]), int(yr[1]) + 1):
        at = _n(y(10.0 ** exponent))
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{at}" y2="{at}"/>'
                     f'<text x="{left - 5}" y="{at}" dy="3" text-anchor="end">{_decimal(10.0 ** exponent)}</text>')
    parts.append(f'<text x="{(left + width - right) // 2}" y="{height - 8}" text-anchor="middle">'
                 f'{escape(x_label)}</text><text transform="translate(14 {(top + height - bottom) // 2}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for roof in roofs:
        line = " ".join(f"{_n(x(px))},{_n(y(py))}" for px, py in roof.points)
        at_x, at_y = roof.points[0] if roof.at_start else roof.points[-1]
        shift = (4, -6) if roof.at_start else (4, 3)
        parts.append(f'<polyline class="roof" points="{line}"/><text class="roof-label" x="{_n(x(at_x) + shift[0])}" '
                     f'y="{_n(y(at_y) + shift[1])}">{escape(roof.label)}</text>')
    for pair in pairs:
        (bx, by), (ox, oy) = (x(pair.baseline[0]), y(pair.baseline[1])), (x(pair.optimized[0]), y(pair.optimized[1]))
        verdict = escape(pair.verdict)
        parts.append(f'<g class="pair"><line x1="{_n(bx)}" y1="{_n(by)}" x2="{_n(ox)}" y2="{_n(oy)}"/>'
                     f'<circle class="base v-{verdict}" cx="{_n(bx)}" cy="{_n(by)}" r="3.5">'
                     f'{_title(f"{pair.label} (baseline): {pair.baseline_note}")}</circle>'
                     f'<circle class="v-{verdict}" cx="{_n(ox)}" cy="{_n(oy)}" r="4">'
                     f'{_title(f"{pair.label} (optimized): {pair.optimized_note}")}</circle></g>')
    legend, low = width - right + 8, height - bottom
    parts.append(f'<circle class="base legend" cx="{legend}" cy="{low - 24}" r="3.5"/>'
                 f'<text x="{legend + 8}" y="{low - 21}">baseline</text>'
                 f'<circle class="v-PASS" cx="{legend}" cy="{low - 8}" r="4"/>'
                 f'<text x="{legend + 8}" y="{low - 5}">optimized</text></svg>')
    return "".join(parts)


def roofline(pairs: Sequence[Pair], copy_gbps: float | None, peaks: dict[str, float]) -> str:
    """Arithmetic intensity (flop/byte) against achieved TFLOP/s, under the measured copy bandwidth (diagonal) and
    matmul peaks (one flat roof per precision); without measured ceilings, the points alone."""
    xs = [p[0] for pair in pairs for p in (pair.baseline, pair.optimized)]
    ys = [p[1] for pair in pairs for p in (pair.baseline, pair.optimized)]
    ridges = {name: peak * 1e3 / copy_gbps for name, peak in peaks.items()} if copy_gbps else {}
    xr = _decades(xs + list(ridges.values()))
    yr = _decades(ys + list(peaks.values()))
    roofs = []
    if copy_gbps:
        top_ridge = max(ridges.values()) if ridges else min(10.0 ** xr[1], 10.0 ** yr[1] * 1e3 / copy_gbps)
        start = 10.0 ** max(xr[0], yr[0] + math.log10(1e3 / copy_gbps))
        roofs.append(Roof(f"copy {copy_gbps:.0f} GB/s", [(start, start * copy_gbps / 1e3),
                                                         (top_ridge, top_ridge * copy_gbps / 1e3)], True))
    for name, peak in sorted(peaks.items(), key=lambda item: item[1]):
        roofs.append(Roof(f"{name} {peak:.3g} TFLOP/s", [(ridges.get(name, 10.0 ** xr[0]), peak),
                                                         (10.0 ** xr[1], peak)]))
    return _plot(pairs, roofs, xr, yr, x_label="arithmetic intensity (flop/byte)", y_label="achieved TFLOP/s",
                 title="roofline: both arms of every case with flops and bytes in its work model")


def bandwidth(pairs: Sequence[Pair], copy_gbps: float | None) -> str:
    """Bytes moved per call against achieved GB/s, under the measured copy bandwidth."""
    xs = [p[0] for pair in pairs for p in (pair.baseline, pair.optimized)]
    ys = [p[1] for pair in pairs for p in (pair.baseline, pair.optimized)] + ([copy_gbps] if copy_gbps else [])
    xr, yr = _decades(xs), _decades(ys)
    roofs = [Roof(f"copy {copy_gbps:.0f} GB/s", [(10.0 ** xr[0], copy_gbps), (10.0 ** xr[1], copy_gbps)])] \
        if copy_gbps else []
    return _plot(pairs, roofs, xr, yr, x_label="bytes moved per call", y_label="achieved GB/s", x_ticks=_bytes,
                 title="bandwidth: both arms of every case whose work model has bytes and no flops")
