"""The record of one measured case: built in the process that ran it, carried on the test report to the
reporting process (the xdist controller, or the single process), and read there by the summary, the
pytest-benchmark export and the expectations update. It is plain JSON-native data (no numpy scalars,
no tensors), because xdist serializes it with execnet.

Keys (``None`` where a value was not measured)::

    key            case id, e.g. "batched_matmul-fp32-64x128x128"; the entry's key in its expectations file
    chapter        "ch01_performance_basics"; the expectations file's name
    nodeid         pytest node id of the test
    func, module   test function name and module path (for pytest-benchmark names)
    hardware       expectations key of the device that measured it ("h100", "cpu", ...)
    device         "cuda" or "cpu"; backend: "cuda-events" or "cpu-clock"
    goal, cache    from the case; dtype, shape: the parameter
    min_speedup    the case's floor
    known_loss     the case's declared reason for measuring below its floor, or None
    work           {"bytes", "flops", "items", "item_name", "flops_at"}
    baseline       arm record (below); optimized: arm record
    speedup        float: median(baseline) / median(optimized) (for the memory goal: the peak-memory ratio, allocated or
                   reserved as the case declares)
    ci             [lo, hi]: bootstrap confidence interval of the speedup, paired by round
    confidence     0.95
    rounds         number of interleaved cycles (each cycle times both arms once at every input placement)
    placements     number of input placements (device addresses) a cycle runs through
    noise_margin   relative margin measured from this run's block speedups (what a recording stores)
    expected       {"speedup", "noise_margin", "baseline_ms", "optimized_ms", "launch_us": [low, high] or None} or None
    host_change    why this host is not comparable with the recording hosts (a case that times host work), or None
    gate           {"low", "high", "source": "expectation" | "floor", "floor": the min_speedup that raised the band's
                   low edge, or None}
    verdict        "PASS" | "REGRESSED" | "IMPROVED" | "INCONCLUSIVE"
    reason         one line that explains the verdict
    remeasured     None, or {"verdict", "speedup", "ci", "reason"} of a first measurement that was INCONCLUSIVE or
                   REGRESSED and was therefore repeated at fresh placements with a larger budget (the record is
                   the repeat's)
    telemetry      {"sm_clock_mhz": [min, max], "mem_clock_mhz": [min, max], "temp_c": [min, max],
                    "power_w": [min, max], "throttle": [reason names seen], "gpu_uuid": str} or None
    ceilings       {"copy_gbps": float, "matmul_tflops": {"fp32": float, "bf16": float, "fp8": float}} or None; for a
                   distributed case {"busbw_gbps": float}, the bus bandwidth of a large NCCL all-reduce in that world
    compute_only   arm record of a distributed overlap pair's ``Case.compute_only``, timed beside the arms in the same
                   rounds; None for every other case
    workload       {statistic: value} from ``Case.workload`` on the timing inputs, or None
    profile        with ``--aiperf-profile``, {"baseline": {kernel: us per call}, "optimized": {...}} of one profiled
                   call of each arm (CUDA kernels' device time; on the CPU, operators' self time); absent otherwise
    traces         with ``--aiperf-profile``, {"baseline": path, "optimized": path} of the Chrome traces written
    time_speedup   [ratio, lo, hi] of the arms' times for the memory goal (whose ``speedup`` is the memory ratio), or None
    correctness    {"seeds": [...], "shapes": [[...]], "err_baseline": float, "err_optimized": float,
                    "bound": float, "rule": str, "tokens": {...} or None}, and "ablations": {name: error} where the
                   case has ablation arms
    ablations      for a case with ablation arms (``Case.ablations``), {name: {"speedup", "ci": [lo, hi], "rounds",
                   "median_ms", "baseline_median_ms", "first_call_ms", "compiled_graphs", "latency"}} in declaration
                   order, each timed after the verdict against the baseline (``ablations.entry``), never gated; absent
                   otherwise
    provenance     {"gpu", "sm_count", "l2_bytes", "driver", "host_cpus", "host_cpu_model", "cuda", "torch",
                    "triton", "python"} of the measuring process

Arm record::

    samples_ms     [float]: device time per call, the mean over one cycle's placements, in cycle order (paired
                   with the other arm's)
    median_ms      float; q1_ms, q3_ms: quartiles
    wall_median_ms float: synchronized host time per call (the side-stream cross-check)
    energy_mj      float or None: energy per call from the NVML energy counter (back-to-back calls)
    peak_bytes     int or None: peak device memory allocated during one call (memory goal)
    dispatch       {"hold_us", "late_calls", "calls"} on a GPU with the dispatch hidden: the hold the arm ran behind
                   at the end, and of its calls in this process so far, how many were dispatched slower than their
                   hold; None otherwise
    first_call_ms  wall time of the arm's first call on the timing inputs, synchronized: its compilation (torch.compile,
                   Triton autotuning, graph capture), never among the samples; None for distributed cases
    compiled_graphs graphs torch.compile compiled during that first call
    latency        for the latency goal, the median over calls of each request-level metric (ttft/tpot/e2e p50 and
                   p99 in ms, tokens_per_s, and the engine's own statistics, such as scheduler_share), of which the
                   declared one is the samples; None otherwise
"""

from __future__ import annotations

from typing import Any, Sequence

from pytest_aiperf.stats import SpeedupEstimate, arm_stats

VERDICTS = ("PASS", "REGRESSED", "IMPROVED", "INCONCLUSIVE")


def arm(samples_ms: list[float], *, median_ms: float, q1_ms: float, q3_ms: float, wall_median_ms: float,
        energy_mj: float | None = None, peak_bytes: int | None = None, dispatch: dict[str, Any] | None = None,
        first_call_ms: float | None = None, compiled_graphs: int = 0,
               latency: dict[str, float] | None = None) -> dict[str, Any]:
    return {
        "samples_ms": [float(s) for s in samples_ms],
        "median_ms": float(median_ms),
        "q1_ms": float(q1_ms),
        "q3_ms": float(q3_ms),
        "wall_median_ms": float(wall_median_ms),
        "energy_mj": None if energy_mj is None else float(energy_mj),
        "peak_bytes": None if peak_bytes is None else int(peak_bytes),
        "dispatch": dispatch,
        "first_call_ms": None if first_call_ms is None else float(first_call_ms),
        "compiled_graphs": int(compiled_graphs),
        "latency": latency,
    }


def summarized(samples_ms: Sequence[float], wall_ms: Sequence[float] | None = None, *, energy_mj: float | None = None,
               peak_bytes: int | None = None, dispatch: dict[str, Any] | None = None,
               first_call_ms: float | None = None, compiled_graphs: int = 0,
               latency: dict[str, float] | None = None) -> dict[str, Any]:
    """The arm record of timed samples and of their wall times (``wall_ms``; None where the samples are their own
    wall time, as a distributed case's slowest rank per round)."""
    stats = arm_stats(samples_ms)
    wall = stats if wall_ms is None else arm_stats(wall_ms)
    return arm(samples_ms, median_ms=stats.median_ms, q1_ms=stats.q1_ms, q3_ms=stats.q3_ms,
               wall_median_ms=wall.median_ms, energy_mj=energy_mj, peak_bytes=peak_bytes, dispatch=dispatch,
               first_call_ms=first_call_ms, compiled_graphs=compiled_graphs, latency=latency)


def build(param: Any, *, chapter: str, nodeid: str, module: str, func: str, hardware: str, device: str,
          backend: str, baseline: dict[str, Any], optimized: dict[str, Any], estimate: SpeedupEstimate,
          noise_margin: float, verdict: Any, gate: Any, expected: Any, host_change: str | None,
          remeasured: dict[str, Any] | None, placements: int, warmup_calls: int, correctness: dict[str, Any],
          telemetry: dict[str, Any] | None, ceilings: dict[str, Any] | None, provenance: dict[str, Any],
          build_note: str | None, compute_only: dict[str, Any] | None = None,
          workload: dict[str, float] | None = None, time_speedup: SpeedupEstimate | None = None,
          profile: dict[str, Any] | None = None, traces: dict[str, str] | None = None,
          ablations: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The record of one case (the keys above), built once from what the pipeline measured and judged.
    ``param`` is the ``CaseParam``; ``verdict`` a ``verdict.Verdict``; ``gate``/``expected`` their objects."""
    case = param.case
    work = param.work_model()
    return {
        "key": param.id, "chapter": chapter, "nodeid": nodeid, "func": func, "module": module,
        "hardware": hardware, "device": device, "backend": backend,
        "goal": case.goal, "cache": case.cache, "dtype": param.dtype, "shape": list(param.shape),
        "min_speedup": case.min_speedup, "known_loss": case.known_loss,
        "work": {"bytes": work.bytes, "flops": work.flops, "items": work.items, "item_name": work.item_name,
                 "flops_at": work.flops_at},
        "baseline": baseline, "optimized": optimized,
        "speedup": estimate.speedup, "ci": [estimate.lo, estimate.hi], "confidence": estimate.confidence,
        "rounds": estimate.rounds, "noise_margin": noise_margin,
        "expected": None if expected is None else expected.to_json(), "host_change": host_change,
        "gate": gate.to_json(), "verdict": verdict.outcome.value, "reason": verdict.reason, "remeasured": remeasured,
        "placements": placements, "build": build_note, "telemetry": telemetry, "ceilings": ceilings,
        "correctness": correctness, "provenance": provenance, "warmup_calls": warmup_calls,
        "compute_only": compute_only, "workload": workload,
        "time_speedup": None if time_speedup is None else [time_speedup.speedup, time_speedup.lo, time_speedup.hi],
        **({"profile": profile, "traces": traces} if profile is not None else {}),
        **({"ablations": ablations} if ablations else {}),
    }


def flops_precision(record: dict[str, Any]) -> str:
    """Which measured matmul ceiling a case's flops are compared with: its work's ``flops_at``, else its dtype's."""
    return ((record.get("work") or {}).get("flops_at")
            or {"fp32": "fp32", "fp64": "fp32", "tf32": "fp32", "fp8e4m3": "fp8"}.get(record.get("dtype"), "bf16"))


def achieved(record: dict[str, Any], arm_name: str = "optimized") -> dict[str, float | None]:
    """Achieved GB/s, TFLOP/s and items/s of one arm, and their share of the measured ceilings."""
    work = record.get("work") or {}
    seconds = record[arm_name]["median_ms"] / 1e3
    gbps = work.get("bytes", 0) / seconds / 1e9 if work.get("bytes") else None
    tflops = work.get("flops", 0) / seconds / 1e12 if work.get("flops") else None
    items = work.get("items", 0) / seconds if work.get("items") else None
    ceilings = record.get("ceilings") or {}
    roof = ceilings.get("busbw_gbps") or ceilings.get("copy_gbps")  # a distributed case: NCCL all-reduce bus bandwidth
    pct_bw = 100 * gbps / roof if gbps and roof else None
    peak = (ceilings.get("matmul_tflops") or {}).get(flops_precision(record))
    pct_flops = 100 * tflops / peak if tflops and peak else None
    return {"gbps": gbps, "tflops": tflops, "items_per_s": items, "pct_bw": pct_bw, "pct_flops": pct_flops}


def communication(record: dict[str, Any]) -> dict[str, float | None]:
    """What the communication of an overlap pair achieves, from its ``compute_only`` timing (None without one).

    The baseline runs computation then communication, so its communication takes ``ms`` = baseline - compute
    (medians); ``gbps`` is the work bytes (each rank's interconnect bytes) over that time and ``pct_bw`` its share of
    the world's all-reduce bus bandwidth. ``hidden`` = (baseline - optimized) / (baseline - compute) is the share of
    that communication time the optimized arm no longer pays. All None when the baseline is no slower than the
    computation alone (no communication time to divide by).
    """
    none: dict[str, float | None] = {"ms": None, "gbps": None, "pct_bw": None, "hidden": None}
    compute = (record.get("compute_only") or {}).get("median_ms")
    if compute is None:
        return none
    base, opt = record["baseline"]["median_ms"], record["optimized"]["median_ms"]
    comm_ms = base - compute
    if comm_ms <= 0:
        return none
    nbytes = (record.get("work") or {}).get("bytes")
    gbps = nbytes / (comm_ms / 1e3) / 1e9 if nbytes else None
    roof = (record.get("ceilings") or {}).get("busbw_gbps")
    return {"ms": comm_ms, "gbps": gbps, "pct_bw": 100 * gbps / roof if gbps and roof else None,
            "hidden": (base - opt) / comm_ms}
