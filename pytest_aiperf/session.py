"""The one session object of a run: options, the device, expectations, and the records of measured cases.

Worker side, ``run`` takes one case through the stages (check, measure, summarize, judge) and returns its record;
reporting side (the single process, or the xdist controller), ``collect`` gathers records from test reports and
``finish`` writes expectation updates once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pytest_aiperf import build, checks, clocks, distributed, expectations, host, lease, machine, measure, record, workers
from pytest_aiperf.cases import CaseParam
from pytest_aiperf.stats import SpeedupEstimate, noise_margin, side_stream_suspect, speedup_ci
from pytest_aiperf.verdict import Expected, Outcome, gate_for, host_shift, judge

REMEASURE_FACTOR = 3.0
CONFIRMED = (Outcome.INCONCLUSIVE.value, Outcome.REGRESSED.value)


class Skip(Exception):
    """The case cannot be measured here; the message says why (the plugin turns it into a pytest skip)."""


class CudaContextLost(RuntimeError):
    """A sticky CUDA error: the process's CUDA context is unusable, so no later case can run in it."""


# CUDA errors after which every later call in the process fails too (the context is corrupted).
STICKY_CUDA_ERRORS = ("illegal memory access", "illegal address", "unspecified launch failure", "misaligned address",
                      "illegal instruction", "device-side assert", "launch timed out", "uncorrectable ECC")


def sticky_cuda_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) reports a CUDA error that poisons the context."""
    while exc is not None:
        if any(pattern.lower() in str(exc).lower() for pattern in STICKY_CUDA_ERRORS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class MeasurementError(AssertionError):
    """The measurement itself is invalid (work escaped the timed stream)."""


@dataclass
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


@dataclass
class AiperfSession:
    options: Options
    rootdir: Path
    custom_backend: Any = None
    records: list[dict[str, Any]] = field(default_factory=list)
    known: dict[str, set[str]] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    last_durations: dict[str, float] = field(default_factory=dict)
    changes: list[Any] = field(default_factory=list)
    stale: list[tuple[str, str]] = field(default_factory=list)
    kernel_dirs: set[Path] = field(default_factory=set)
    _backend: Any = None
    _backend_ready: bool = False
    _stores: dict[str, Any] = field(default_factory=dict)
    _ceilings: Any = None
    _telemetry: Any = None
    _provenance: Any = None
    build_note: str | None = None
    watchdog: Any = None
    context_lost: str | None = None

    @functools.cached_property
    def gpus(self) -> list[machine.Gpu]:
        return machine.visible_gpus() if self.options.backend in ("auto", "cuda") else []

    @functools.cached_property
    def hardware(self) -> str:
        if self.options.hardware:
            return self.options.hardware
        if self.custom_backend is not None:
            return getattr(self.custom_backend, "hardware", "custom")
        gpus = self.gpus
        return machine.hardware_key(gpus[0].name) if gpus and self.options.backend != "cpu" else "cpu"

    @property
    def timing_name(self) -> str:
        if self.custom_backend is not None:
            return self.custom_backend.name
        if self.options.backend == "cpu":
            return clocks.CpuClock.name
        return clocks.CudaEvents.name if self.gpus else "none (no CUDA device)"

    def store(self, gpus: int = 1) -> expectations.Store:
        """The expectations of this hardware, or of ``gpus`` of it used together (``2x_h200``)."""
        hardware = self.hardware_for(gpus)
        if hardware not in self._stores:
            self._stores[hardware] = expectations.Store(self.rootdir / self.options.expectations_dir, hardware)
            if gpus == 1:
                self._stores[hardware].preload()
        return self._stores[hardware]

    def hardware_for(self, gpus: int) -> str:
        return self.hardware if gpus == 1 else f"{gpus}x_{self.hardware}"

    def backend(self) -> Any:
        """The timing backend, created on first use in the process that measures (never in the controller)."""
        if not self._backend_ready:
            self._backend_ready = True
            if self.custom_backend is not None:
                self._backend = self.custom_backend
            elif self.options.backend == "cpu":
                self._backend = clocks.CpuClock()
            else:
                import torch

                if torch.cuda.is_available():
                    self._backend = clocks.CudaEvents()
                    self._open_device()
                elif self.options.backend == "cuda":
                    raise Skip("--aiperf-backend=cuda but torch sees no CUDA device")
        return self._backend

    def _open_device(self) -> None:
        import torch

        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        uuid = str(getattr(props, "uuid", "") or "")
        uuid = uuid if not uuid or uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        self._telemetry = machine.Telemetry.open(uuid or None)
        share = functools.partial(workers.cpu_share, environ=os.environ)
        self.build_note = self._prebuild()  # before pin_host narrows the CPUs, which nvcc would inherit
        pin = host.pin_host(self._backend, share) if self.options.host_cpus == "fast" else None
        self._ceilings = measure.measure_ceilings(self._backend)
        static = machine.static_info()
        self._provenance = {"gpu": props.name, "gpu_uuid": uuid, "sm_count": props.multi_processor_count,
                            "l2_bytes": self._backend.l2_bytes, "driver": static.get("driver"),
                            "host_cpus": pin.describe() if pin else "not pinned",
                            "launch_us": pin.best_us if pin else None,
                            "host_cpu_model": machine.host_cpu_model(), **machine.software_versions()}

    def _prebuild(self) -> str | None:
        """Build every CUDA source of the collected chapters at once, in parallel, before the first case; a
        source that fails here fails only the cases that use it, when they load it."""
        sources = sorted({cu for folder in self.kernel_dirs for cu in folder.glob("**/*.cu")})
        if not sources:
            return None
        import time

        start = time.perf_counter()
        try:
            results = build.build_all(sources, include_dirs=[self.rootdir / "kernels"])
        except build.BuildError as exc:
            return f"CUDA build not run: {exc}"
        failed = sum(isinstance(r, BaseException) for r in results.values())
        return (f"CUDA build: {len(sources)} sources in {time.perf_counter() - start:.1f} s"
                f"{f', {failed} failed' if failed else ''}")

    def provenance(self) -> dict[str, Any]:
        return self._provenance or {"gpu": None, "sm_count": None, "l2_bytes": None, "driver": None,
                                    **machine.software_versions()}

    # ------------------------------------------------------------------ worker side: one case through the stages

    def run(self, param: CaseParam, *, nodeid: str, module: str, func: str, chapter: str) -> dict[str, Any]:
        """Check, measure and judge one case, holding the GPUs it uses alone (``lease``). After a sticky CUDA
        error every later case fails at once, naming the case that lost the context, instead of failing with CUDA
        errors that are not its own."""
        __tracebackhide__ = True
        if self.context_lost:
            raise CudaContextLost(f"not run: {self.context_lost}")
        uuids = sorted(gpu.uuid for gpu in self.gpus[:param.gpus]) if self.custom_backend is None else []
        try:
            with contextlib.ExitStack() as held:
                for uuid in uuids:  # in one order everywhere, so two processes never wait on each other's GPU
                    held.enter_context(lease.exclusive(uuid))
                return self._run(param, nodeid=nodeid, module=module, func=func, chapter=chapter)
        except Exception as exc:
            if not sticky_cuda_error(exc):
                raise
            self.context_lost = (f"the CUDA context of this process was lost in {nodeid} ({str(exc).splitlines()[0]}); "
                                 "no CUDA work can run in it again. Fix that case, then run the cases after it in a "
                                 "fresh process (pytest --lf)")
            raise CudaContextLost(self.context_lost) from exc

    def _run(self, param: CaseParam, *, nodeid: str, module: str, func: str, chapter: str) -> dict[str, Any]:
        __tracebackhide__ = True
        if param.world > 1:
            return self._run_distributed(param, nodeid=nodeid, module=module, func=func, chapter=chapter)
        case = param.case
        backend = self.backend()
        device = backend.device if backend is not None else "cpu"
        if case.needs_cuda and device != "cuda":
            raise Skip(f"{param.id} needs a CUDA device (it uses pinned memory, streams or CUDA kernels)")
        lacking = machine.lacks_capability(case.min_capability)
        if lacking:
            raise Skip(f"{param.id} {lacking}")
        self._check_gpu_count(param)
        report = checks.verify(param, device)
        if backend is None:
            raise Skip(f"timing skipped: no CUDA device. Correctness verified on {device}: {len(report.seeds)} seeds x "
                       f"{len(report.shapes)} shapes, max relative error {report.err_optimized:.2g} "
                       f"(baseline {report.err_baseline:.2g})")
        seed = param.seeds(1)[0]
        checks.verify(param, device, shapes=[param.shape], seeds=[seed])
        inputs = list(case.inputs(param.shape, param.dtype, seed, device))
        entry = self.store(param.gpus).get(chapter, param.id)
        expected = Expected.from_entry(entry) if entry else None
        gate = gate_for(expected, case.min_speedup)
        budget = case.budget_s or self.options.budget_s
        updating = self.options.update is not None
        timing = dict(cold=case.cache == "cold", hide_dispatch=case.host_dispatch == "hidden",
                      telemetry=self._telemetry)
        samples = measure.sample_pair(backend, case.baseline, case.optimized, measure.placements(inputs, seed=seed),
                                      budget_s=budget, gate=None if updating else gate, **timing)
        dispatch_note = getattr(backend, "dispatch_note", None) if timing["hide_dispatch"] else None
        notes = {arm: dispatch_note(fn) for arm, fn in (("baseline", case.baseline), ("optimized", case.optimized))
                 } if dispatch_note is not None else {}
        host_bound = not timing["hide_dispatch"] or any(n["late_calls"] >= 0.5 * n["calls"] for n in notes.values())
        shift = host_shift(expected.launch_us, self.provenance().get("launch_us")) if expected and host_bound else None
        judged = dict(expected=expected, gate=gate, report=report, host_change=shift,
                      hardware=self.hardware_for(param.gpus))
        rec = self._record(param, chapter, nodeid, module, func, backend, samples, **judged)
        if rec["verdict"] in CONFIRMED and not updating and case.goal != "memory":
            first = {k: rec[k] for k in ("verdict", "speedup", "ci", "reason")}
            fresh = measure.placements(inputs, seed=seed + 1)
            samples = measure.sample_pair(backend, case.baseline, case.optimized, fresh,
                                          budget_s=budget * REMEASURE_FACTOR, gate=gate, **timing)
            del fresh
            rec = self._record(param, chapter, nodeid, module, func, backend, samples, **judged)
            rec["remeasured"] = first
            rec["reason"] += (f" (first measurement {first['verdict']} at {first['speedup']:.3g}x "
                              f"[{first['ci'][0]:.3g}, {first['ci'][1]:.3g}]; measured again at fresh placements)")
        for arm, fn in (("baseline", case.baseline), ("optimized", case.optimized)):
            if arm in notes:
                rec[arm]["dispatch"] = notes[arm]
            rec[arm]["energy_mj"] = measure.energy_per_call(backend, fn, inputs, self._telemetry)
            if case.goal == "memory":
                rec[arm]["peak_bytes"] = backend.peak_bytes(fn, inputs)
        if case.goal == "memory":
            self._judge_memory(rec, expected, gate)
        return rec

    def _run_distributed(self, param: CaseParam, *, nodeid: str, module: str, func: str, chapter: str) -> dict:
        """A case on ``param.world`` ranks that ``distributed`` starts: never beside other work on this process's
        GPUs, keyed in ``expectations/<world>x_<hardware>/``."""
        __tracebackhide__ = True
        cpu = self.options.backend == "cpu" or self.custom_backend is not None or not self.gpus
        self._check_gpu_count(param, cpu=cpu)
        timed = not cpu or self.options.backend == "cpu"
        world = distributed.measure(param, param.world, cuda=not cpu, budget_s=param.case.budget_s or
                                    self.options.budget_s, timeout_s=self.options.timeout_s or 3600, timed=timed)
        worst = max(world.checks, key=lambda c: c["err_optimized"])
        report = checks.CheckReport(**worst)
        if not timed:
            raise Skip(f"timing skipped: no CUDA device. Correctness verified on {param.world} gloo ranks, each "
                       f"{len(report.seeds)} seeds x {len(report.shapes)} shapes, max relative error "
                       f"{report.err_optimized:.2g} (baseline {report.err_baseline:.2g})")
        hardware = self.hardware_for(param.world)
        entry = self.store(param.world).get(chapter, param.id)
        expected = Expected.from_entry(entry) if entry else None
        samples = measure.Samples(base_ms=world.base_ms, opt_ms=world.opt_ms, base_wall_ms=world.base_ms,
                                  opt_wall_ms=world.opt_ms)
        backend = SimpleNamespace(device="cpu" if cpu else "cuda", name=f"{world.backend}, {param.world} ranks, "
                                  f"slowest rank per round")
        rec = self._record(param, chapter, nodeid, module, func, backend, samples, expected=expected,
                           gate=gate_for(expected, param.case.min_speedup), report=report, hardware=hardware)
        rec["provenance"] = {**world.provenance, **{k: v for k, v in rec["provenance"].items() if v is not None}}
        rec["ceilings"] = {"busbw_gbps": world.busbw_gbps} if world.busbw_gbps else None
        rec["compute_only"] = record.summarized(world.compute_ms) if world.compute_ms else None
        return rec

    def _check_gpu_count(self, param: CaseParam, cpu: bool = False) -> None:
        """Skip a multi-GPU case in an xdist worker (one GPU each) or where fewer GPUs are visible."""
        if param.gpus == 1:
            return
        if self.options.xdist_worker:
            raise Skip(f"{param.id} uses {param.gpus} GPUs, which an xdist worker (one GPU) cannot: run it without "
                       f"xdist (-n 0), after the single-GPU cases (select them with -m multigpu)")
        if not cpu and len(self.gpus) < param.gpus:
            raise Skip(f"{param.id} needs {param.gpus} GPUs; this process sees {len(self.gpus)}")

    def _record(self, param: CaseParam, chapter: str, nodeid: str, module: str, func: str, backend: Any,
                samples: measure.Samples, expected: Expected | None, gate: Any, report: checks.CheckReport,
                host_change: str | None = None, hardware: str | None = None) -> dict:
        __tracebackhide__ = True
        hardware = hardware or self.hardware
        for arm, events, walls in (("baseline", samples.base_ms, samples.base_wall_ms),
                                   ("optimized", samples.opt_ms, samples.opt_wall_ms)):
            suspect = side_stream_suspect(events, walls)
            if suspect:
                raise MeasurementError(f"{arm} arm of {param.id}: {suspect}. Work escaped the current stream: join side "
                                       f"streams (torch.cuda.current_stream().wait_stream(s)) before returning")
        est = speedup_ci(samples.base_ms, samples.opt_ms)
        base = record.summarized(samples.base_ms, samples.base_wall_ms)
        opt = record.summarized(samples.opt_ms, samples.opt_wall_ms)
        tele = machine.summarize(samples.telemetry) if samples.telemetry else None
        severe = sorted(set((tele or {}).get("throttle", [])) & machine.SEVERE_THROTTLE)
        verdict = judge(est, gate, expected=expected, baseline_ms=base["median_ms"], optimized_ms=opt["median_ms"],
                        throttle=severe, host_change=host_change, hardware=hardware)
        work = param.work_model()
        return {
            "key": param.id, "chapter": chapter, "nodeid": nodeid, "func": func, "module": module,
            "hardware": hardware, "device": backend.device, "backend": backend.name,
            "goal": param.case.goal, "cache": param.case.cache, "dtype": param.dtype, "shape": list(param.shape),
            "min_speedup": param.case.min_speedup,
            "work": {"bytes": work.bytes, "flops": work.flops, "items": work.items, "item_name": work.item_name,
                     "flops_at": work.flops_at},
            "baseline": base, "optimized": opt,
            "speedup": est.speedup, "ci": [est.lo, est.hi], "confidence": est.confidence, "rounds": est.rounds,
            "noise_margin": noise_margin(samples.base_ms, samples.opt_ms, floor=self.options.min_margin),
            "expected": None if expected is None else expected.to_json(), "host_change": host_change,
            "gate": gate.to_json(), "verdict": verdict.outcome.value, "reason": verdict.reason, "remeasured": None,
            "placements": samples.placements, "build": self.build_note,
            "telemetry": tele, "ceilings": self._ceilings, "correctness": report.to_json(),
            "provenance": self.provenance(), "warmup_calls": samples.warmup_calls, "compute_only": None,
        }

    def _judge_memory(self, rec: dict[str, Any], expected: Expected | None, gate: Any) -> None:
        base, opt = rec["baseline"]["peak_bytes"], rec["optimized"]["peak_bytes"]
        if not base or not opt:
            raise Skip(f"{rec['key']}: the memory goal needs peak-memory tracking, which {rec['backend']} lacks")
        ratio = base / opt
        est = SpeedupEstimate(speedup=ratio, lo=ratio, hi=ratio, confidence=1.0, rounds=1)
        verdict = judge(est, gate, expected=expected, baseline_ms=rec["baseline"]["median_ms"],
                        optimized_ms=rec["optimized"]["median_ms"], hardware=rec["hardware"])
        rec.update(speedup=ratio, ci=[ratio, ratio], noise_margin=self.options.min_margin,
                   verdict=verdict.outcome.value, reason=f"peak memory {base} -> {opt} bytes; {verdict.reason}")

    # ------------------------------------------------------------------ reporting side

    def collect(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)

    def finish(self) -> None:
        """Write expectation updates (once, here) and find entries whose case no longer exists."""
        root = self.rootdir / self.options.expectations_dir
        if self.options.update is not None and self.records:
            commit, dirty = expectations.git_commit(self.rootdir)
            self.changes = expectations.apply_updates(root, self.records, mode=self.options.update,
                                                      date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                                      commit=commit, dirty=dirty)
        if self.known:
            self.stale = expectations.stale(root, self.hardware, self.known)

