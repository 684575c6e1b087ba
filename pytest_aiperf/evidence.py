"""Evidence on a regression (``--aiperf-profile``): a ``torch.profiler`` trace of one call of each arm, its per-kernel
summary in the record, and, for a REGRESSED case, the kernels whose time changed most since the profile recorded
with its expectation, in the failure message.

Runs in the measuring process, after the case was measured and judged, on the timing shape and the timing seed. The
record gets ``profile`` (``{"baseline": {kernel: us}, "optimized": {kernel: us}}``: CUDA kernels' device time on a GPU,
operators' self CPU time on the CPU, per call) and ``traces`` (``{"baseline": path, "optimized": path}``, Chrome trace
JSON). Modes: ``regressed`` profiles REGRESSED cases, and every case of a run that updates expectations (so that
each recording keeps its profile); ``all`` profiles every case. Distributed cases are not profiled.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path
from typing import Any

from pytest_aiperf import arms, kernel_diff
from pytest_aiperf.cases import CaseParam
from pytest_aiperf.verdict import AiperfWarning

MODES = ("off", "regressed", "all")
TRACES = Path(".aiperf") / "traces"  # under the rootdir, when no HTML report is written


class ProfileNotCaptured(AiperfWarning):
    """The profiler could not profile a case's arms; the case's verdict stands without kernel evidence."""


def wanted(mode: str, verdict: str, updating: bool) -> bool:
    """Whether a case with ``verdict`` is profiled in ``mode`` (``updating``: the run records expectations)."""
    return mode == "all" or (mode == "regressed" and (verdict == "REGRESSED" or updating))


def trace_folder(rootdir: Path, html: Path | None) -> Path:
    """``<report>-traces/`` beside the ``--aiperf-html`` file, else ``<rootdir>/.aiperf/traces/``."""
    return html.with_name(f"{html.stem}-traces") if html is not None else rootdir / TRACES


def gather(pair: CaseParam, device: str, verdict: str, *, mode: str, updating: bool, folder: Path,
           recorded: Any) -> tuple[dict[str, dict[str, float]] | None, dict[str, str] | None, str]:
    """Profile the case where ``mode`` asks for it: ``(profile, traces, note)``, the note to append to a REGRESSED
    case's reason (the kernels that changed most since the ``recorded`` profile, or why none was captured); ""
    otherwise. A profiler that fails loses no measurement: a passing case only warns."""
    if pair.world > 1 or not wanted(mode, verdict, updating):
        return None, None, ""
    try:
        profile, traces = capture(pair, device, folder)
    except Exception as exc:  # the profiler's failure is no reason to lose the case's measurement
        note = f"no kernel profile: {type(exc).__name__}: {exc}"
        if verdict == "REGRESSED":
            return None, None, note
        warnings.warn(ProfileNotCaptured(f"{pair.id}: {note}"), stacklevel=2)
        return None, None, ""
    if verdict != "REGRESSED":
        return profile, traces, ""
    return profile, traces, f"kernels: {kernel_diff.evidence(recorded, profile)}"


def capture(pair: CaseParam, device: str, folder: Path) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Profile one call of each arm of ``pair`` on ``device`` (after an unprofiled call, so nothing compiles inside
    the trace); write each arm's Chrome trace into ``folder``. Returns the per-kernel summary and the trace paths."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    case = pair.case
    inputs = list(case.inputs(pair.shape, pair.dtype, pair.seeds(1)[0], device))
    cuda = device == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    folder.mkdir(parents=True, exist_ok=True)
    summary, traces = {}, {}
    for name, arm in (("baseline", case.baseline), ("optimized", case.optimized)):
        fn = arms.timed(arm, inputs)
        for profiled in (False, True):
            before = getattr(fn, "before_call", None)
            if before is not None:
                before()
            if cuda:
                torch.cuda.synchronize()
            with profile(activities=activities) if profiled else contextlib.nullcontext() as prof:
                fn(*inputs)
                if cuda:
                    torch.cuda.synchronize()
        path = folder / f"{_file_name(pair.id)}-{name}.json"
        prof.export_chrome_trace(str(path))
        summary[name], traces[name] = kernel_times(prof, cuda), str(path)
    return summary, traces


def kernel_times(prof: Any, cuda: bool) -> dict[str, float]:
    """Microseconds per kernel in a profile: CUDA kernels' self device time, or on the CPU operators' self CPU time."""
    from torch.autograd import DeviceType

    times: dict[str, float] = {}
    for event in prof.key_averages():
        if cuda:
            us = event.self_device_time_total if event.device_type == DeviceType.CUDA else 0.0
        else:
            us = event.self_cpu_time_total if event.device_type == DeviceType.CPU else 0.0
        if us > 0:
            times[event.key] = round(float(us), 3)
    return times


def _file_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case_id)[:150]
