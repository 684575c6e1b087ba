"""Export measured cases to pytest-benchmark: JSON, ``--benchmark-save/compare/compare-fail`` and its CLI.

The only module that touches pytest-benchmark internals. Our tests never request the ``benchmark`` fixture (its
host-clock timer cannot time device work); instead, for each record, the reporting process appends two
``pytest_benchmark.stats.Metadata`` objects, ``<func>[<key>-baseline]`` and ``<func>[<key>-optimized]``, to
``config._benchmarksession.benchmarks``. Both share ``group=<key>``, so pytest-benchmark's table shows the pair
together and its "(ratio)" column is the speedup; distinct ``fullname``s keep ``--benchmark-compare`` (which maps
by fullname) pairing each arm with its own history.

Findings in the pytest-benchmark 5.2.3 source that this design relies on:

- ``Metadata(fixture, iterations, options)`` reads ``name, fullname, group, param, params, extra_info,
  cprofile_stats`` from the fixture at construction and ``fixture.has_error`` later (the JSON hook drops entries
  with errors); ``as_dict`` passes ``options`` through (callables become their names), nothing else reads them.
  ``update(duration)`` stores ``duration / iterations`` in seconds.
- ``BenchmarkSession.handle_saving`` writes ``--benchmark-json`` and ``--benchmark-save/--benchmark-autosave``
  whenever ``self.benchmarks`` is non-empty; it does not look at ``self.disabled`` (only to silence the "no
  benchmarks" warning). ``prepare_benchmarks``/``display``/``check_regressions`` also only read ``self.benchmarks``,
  ``compared_mapping`` (loaded at configure by ``handle_loading`` from ``self.compare``) and ``compare_fail``.
  So the ``disabled=True`` that xdist forces on the controller needs no attribute flipped: nothing is changed here.
  ``--benchmark-disable`` is honoured by reading the option itself (``bs.disabled`` cannot tell it from xdist).
- ``plugin.pytest_sessionfinish`` is a ``hookwrapper`` that runs ``finish()`` (saving and comparing) *before* its
  ``yield``, i.e. before every plain ``pytest_sessionfinish`` implementation, ``tryfirst`` or not. Export therefore
  belongs in ``pytest_runtest_logreport`` of the reporting process (each result arrives there, with or without
  xdist), or in a ``pytest_sessionfinish`` wrapper with ``tryfirst=True``. Export from the ``call`` report only:
  ``user_properties`` are copied onto the teardown report too, so exporting on every report doubles the entries.
- ``--benchmark-json`` is an ``argparse.FileType('wb')``: the file is created (empty) at option parsing, even when
  nothing is exported.
- Never export in an xdist worker: a worker's session has ``json``/``save`` set as well and would write the file.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

from pytest_aiperf.record import achieved, flops_precision

VARIANTS = ("baseline", "optimized")
TIMERS = {"cuda-events": "cuda_event", "cpu-clock": "cpu_clock"}
METADATA_PARAMETERS = ("self", "fixture", "iterations", "options")


class _FixtureShim:
    """Exactly what ``Metadata`` reads from a ``BenchmarkFixture``."""

    def __init__(self, *, name: str, fullname: str, group: str, param: str, params: dict[str, str],
                 extra_info: dict[str, Any]) -> None:
        self.name = name
        self.fullname = fullname
        self.group = group
        self.param = param
        self.params = params
        self.extra_info = extra_info
        self.cprofile_stats = None
        self.has_error = False


@lru_cache(maxsize=1)
def supported() -> bool:
    """Whether the installed pytest-benchmark has the private ``Metadata`` API this module was written against."""
    try:
        from pytest_benchmark.stats import Metadata
    except ImportError:
        return False
    try:
        parameters = tuple(inspect.signature(Metadata.__init__).parameters)
    except (TypeError, ValueError):
        return False
    return parameters == METADATA_PARAMETERS and callable(getattr(Metadata, "update", None)) \
        and callable(getattr(Metadata, "as_dict", None))


def export(config: Any, record: dict[str, Any]) -> bool:
    """Append the record's two arms to the pytest-benchmark session; returns whether it appended.

    Call it only in the reporting process (no xdist, or the xdist controller). Appends nothing when
    pytest-benchmark is absent or blocked (``-p no:benchmark``), when ``--benchmark-disable`` was given, when its
    private API changed (``supported()`` is False), or when an arm has no timing samples.
    """
    session = getattr(config, "_benchmarksession", None)
    if session is None or not isinstance(getattr(session, "benchmarks", None), list) or not supported():
        return False
    if _option(config, "benchmark_disable") and not _option(config, "benchmark_enable"):
        return False
    if not requested(config):
        return False
    if not all((record.get(variant) or {}).get("samples_ms") for variant in VARIANTS):
        return False
    session.benchmarks.extend(metadata(record, variant) for variant in VARIANTS)
    return True


def requested(config: Any) -> bool:
    """Whether the user asked pytest-benchmark for an output; without one its table would print on every run."""
    return any(_option(config, name) for name in ("benchmark_json", "benchmark_save", "benchmark_autosave",
                                                   "benchmark_compare", "benchmark_histogram"))


def metadata(record: dict[str, Any], variant: str) -> Any:
    """One arm of a record as a filled ``pytest_benchmark.stats.Metadata`` (samples converted from ms to s)."""
    from pytest_benchmark.stats import Metadata

    key, func = record["key"], record["func"]
    param = f"{key}-{variant}"
    shim = _FixtureShim(name=f"{func}[{param}]", fullname=f"{record['module']}::{func}[{param}]", group=key,
                        param=param, params={"case": key, "variant": variant},
                        extra_info=extra_info(record, variant))
    options = {
        "timer": TIMERS.get(record.get("backend") or "", "cpu_clock"),
        "disable_gc": False,
        "min_rounds": record.get("rounds"),
        "min_time": 0,
        "warmup": True,
    }
    result = Metadata(shim, iterations=1, options=options)
    for sample_ms in record[variant]["samples_ms"]:
        result.update(float(sample_ms) / 1e3)
    return result


def extra_info(record: dict[str, Any], variant: str) -> dict[str, Any]:
    """JSON-native scalars that explain one arm's entry: the pair's verdict and the conditions it was measured in."""
    telemetry = record.get("telemetry") or {}
    sm_clock = telemetry.get("sm_clock_mhz") or [None, None]
    ci = record.get("ci") or [None, None]
    dispatch = (record.get(variant) or {}).get("dispatch") or {}
    return {
        "variant": variant,
        "chapter": record.get("chapter"),
        "goal": record.get("goal"),
        "speedup": record.get("speedup"),
        "ci_lo": ci[0],
        "ci_hi": ci[1],
        "verdict": record.get("verdict"),
        "remeasured": bool(record.get("remeasured")),
        "hardware": record.get("hardware"),
        "backend": record.get("backend"),
        "expected_speedup": (record.get("expected") or {}).get("speedup"),
        "gate_low": (record.get("gate") or {}).get("low"),
        "gate_source": (record.get("gate") or {}).get("source"),
        "energy_mj": (record.get(variant) or {}).get("energy_mj"),
        "peak_bytes": (record.get(variant) or {}).get("peak_bytes"),
        "sm_clock_mhz_min": sm_clock[0],
        "sm_clock_mhz_max": sm_clock[1],
        "gpu_uuid": telemetry.get("gpu_uuid"),
        "dispatch_hold_us": dispatch.get("hold_us"),
        "late_dispatch_calls": dispatch.get("late_calls"),
        **roofline(record, variant),
    }


def roofline(record: dict[str, Any], variant: str) -> dict[str, Any]:
    """Where one arm sits on the roofline, ready to chart: its work's arithmetic intensity (flop/byte), what it
    achieved, and the measured roofs it is compared with (``None`` where the work model or the ceiling lacks it)."""
    work = record.get("work") or {}
    rates = achieved(record, variant) if (record.get(variant) or {}).get("median_ms") else {}
    ceilings = record.get("ceilings") or {}
    precision = flops_precision(record)
    return {
        "work_bytes": work.get("bytes") or None,
        "work_flops": work.get("flops") or None,
        "intensity_flop_per_byte": work["flops"] / work["bytes"] if work.get("flops") and work.get("bytes") else None,
        "achieved_gbps": rates.get("gbps"),
        "achieved_tflops": rates.get("tflops"),
        "ceiling_gbps": ceilings.get("copy_gbps"),
        "ceiling_tflops": (ceilings.get("matmul_tflops") or {}).get(precision),
        "ceiling_precision": precision,
    }


def junit_properties(record: dict[str, Any]) -> list[tuple[str, object]]:
    """Small scalars for JUnit ``<properties>``; a value that was not measured is left out, never ``None``."""
    ci = record.get("ci") or [None, None]
    candidates: list[tuple[str, object]] = [
        ("aiperf.speedup", record.get("speedup")),
        ("aiperf.ci_lo", ci[0]),
        ("aiperf.ci_hi", ci[1]),
        ("aiperf.verdict", record.get("verdict")),
        ("aiperf.reason", record.get("reason")),
        ("aiperf.expected", (record.get("expected") or {}).get("speedup")),
        ("aiperf.hardware", record.get("hardware")),
        ("aiperf.baseline_ms", (record.get("baseline") or {}).get("median_ms")),
        ("aiperf.optimized_ms", (record.get("optimized") or {}).get("median_ms")),
    ]
    return [(name, value) for name, value in candidates if value is not None]


def _option(config: Any, name: str) -> Any:
    try:
        return config.getoption(name)
    except ValueError:
        return None
