"""The plugin's options: parsed and validated when pytest parses the command line, so a bad value is a usage error
before anything runs, and read into one ``Options`` object. Pure: nothing here imports torch or touches a device.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_aiperf.machine import HARDWARE_KEYS

DEFAULT_BUDGET_S = "3.0"
DEFAULT_TIMEOUT_S = "300"
_HARDWARE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_PERF_MARKERS = re.compile(r"\b(perf|multigpu)\b")


@dataclass(frozen=True)
class Options:
    update: str | None = None
    strict: bool = False
    hardware: str | None = None
    backend: str = "auto"
    budget_s: float = 3.0
    min_margin: float = 0.03
    expectations_dir: Path = Path("expectations")
    host_cpus: str = "fast"
    timeout_s: float = 300.0
    xdist_worker: bool = False
    profile: str = "off"
    trace_dir: Path = Path(".aiperf") / "traces"


def seconds(text: str, *, zero: bool = False) -> float:
    """A number of seconds: finite and positive (``zero``: or 0). Raises ``argparse.ArgumentTypeError``."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        wanted = "0 (no limit) or a positive finite number" if zero else "a positive finite number"
        raise argparse.ArgumentTypeError(f"{text!r}: expected {wanted} of seconds")
    return value


def budget(text: str) -> float:
    """``--aiperf-budget``: positive seconds."""
    return seconds(text)


def timeout(text: str) -> float:
    """``--aiperf-timeout``: 0 (no limit) or positive seconds."""
    return seconds(text, zero=True)


def hardware(text: str) -> str:
    """``--aiperf-hardware``: a plain lower-case key (it names a folder under expectations/): letters, digits,
    ``.``, ``_`` and ``-``, starting with a letter or digit, at most 64 characters."""
    if not _HARDWARE.fullmatch(text or "") or ".." in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} cannot name an expectations folder: use lower-case letters, digits, '.', '_' and '-' "
            "(at most 64, starting with a letter or digit), e.g. h100")
    return text


def from_config(config: pytest.Config) -> Options:
    """The run's options; the ini values are validated here (the command line's were validated when parsed)."""
    try:
        budget_s = config.getoption("aiperf_budget") or seconds(config.getini("aiperf_budget"))
        timeout_s = config.getoption("aiperf_timeout")
        timeout_s = timeout_s if timeout_s is not None else seconds(config.getini("aiperf_timeout"), zero=True)
        min_margin = float(config.getini("aiperf_min_margin"))
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise pytest.UsageError(f"pytest-aiperf ini setting: {exc}") from None
    if not 0 <= min_margin < 1:
        raise pytest.UsageError(f"aiperf_min_margin must be in [0, 1), got {min_margin:g}")
    options = Options(update=config.getoption("aiperf_update"), strict=config.getoption("aiperf_strict"),
                      hardware=config.getoption("aiperf_hardware"), backend=config.getoption("aiperf_backend"),
                      budget_s=budget_s, min_margin=min_margin,
                      expectations_dir=Path(config.getini("aiperf_expectations")),
                      host_cpus=config.getoption("aiperf_host_cpus"), timeout_s=timeout_s,
                      xdist_worker=hasattr(config, "workerinput"),
                      profile=config.getoption("aiperf_profile", "off"), trace_dir=_trace_dir(config))
    mismatch = backend_mismatch(options)
    if mismatch:
        raise pytest.UsageError(mismatch)
    return options


def _trace_dir(config: pytest.Config) -> Path:
    """Where ``--aiperf-profile`` writes traces: beside the ``--aiperf-html`` page, else under the rootdir."""
    from pytest_aiperf.evidence import trace_folder

    html = config.getoption("aiperf_html", None)
    return trace_folder(config.rootpath, Path(config.invocation_params.dir, html) if html else None)


def backend_mismatch(options: Options) -> str | None:
    """Why the host clock cannot be filed under a GPU's key: its timings would gate, or be pooled into, that GPU's
    expectations. None when the combination is sound."""
    if options.backend == "cpu" and options.hardware in set(HARDWARE_KEYS.values()):
        return (f"--aiperf-backend=cpu times on the host clock, but --aiperf-hardware={options.hardware} names a "
                f"GPU's expectations: host-clock timings would gate, or be recorded into, that GPU's entries. Give "
                f"the host clock a key of its own (the default is 'cpu')")
    return None


def opted_in(config: pytest.Config, defaults: dict[str, Any]) -> bool:
    """Whether this run asked for the plugin before collection: the project's ini sets ``aiperf = true``, a
    pytest-aiperf option differs from its default (``defaults``: option dest -> default), or ``-m`` selects perf
    or multigpu cases. The xdist hooks act only then (they run before anything is collected); everything else
    acts where perf cases are collected."""
    if config.getini("aiperf"):
        return True
    if any(config.getoption(dest) != default for dest, default in defaults.items()):
        return True
    return bool(_PERF_MARKERS.search(config.getoption("markexpr", "") or ""))
