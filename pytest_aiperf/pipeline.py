"""One case, one way through, in the process that measures it: look up its expectation (once), check both arms
against the reference, plan how the case is timed (``Plan``: the clock, and each arm's first call, which compiles,
timed apart), measure them, judge the speedup (measuring again at fresh placements when the first verdict is
REGRESSED or INCONCLUSIVE), and build the record once.

``Measurer`` is this process's measuring role: the device, the expectations it reads, and whether a sticky CUDA
error has already lost the context. Each case holds the GPUs it uses alone (``lease``).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any

from pytest_aiperf import (ablations, arms, checks, clocks, coldstart, distributed, evidence, expectations, judging,
                           latency, lease, machine, measure, record)
from pytest_aiperf.cases import CaseParam
from pytest_aiperf.device import Device, Skip
from pytest_aiperf.judging import Judgement
from pytest_aiperf.options import Options
from pytest_aiperf.verdict import Expected, Gate, Outcome, Verdict, gate_for, host_shift

REMEASURE_FACTOR = 3.0
COLD_START_ROUNDS = 5
CONFIRMED = (Outcome.INCONCLUSIVE, Outcome.REGRESSED)

# CUDA errors after which every later call in the process fails too (the context is corrupted).
STICKY_CUDA_ERRORS = ("illegal memory access", "illegal address", "unspecified launch failure", "misaligned address",
                      "illegal instruction", "device-side assert", "launch timed out", "uncorrectable ECC")


class CudaContextLost(RuntimeError):
    """A sticky CUDA error: the process's CUDA context is unusable, so no later case can run in it."""


def sticky_cuda_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) reports a CUDA error that poisons the context."""
    while exc is not None:
        if any(pattern.lower() in str(exc).lower() for pattern in STICKY_CUDA_ERRORS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@dataclass(frozen=True)
class Location:
    """Where a case was collected: its test's node id, module path and function, and its expectations chapter."""

    nodeid: str
    module: str
    func: str
    chapter: str


@dataclass(frozen=True)
class Plan:
    """How one case is timed: the clock, the arms as the loop calls them, their first calls (compilation) timed
    apart, whether samples cycle over input placements (and energy is measured: neither for a stateful arm, whose
    state is not in its inputs, nor for a cold start), and ``measure.sample_pair``'s options."""

    clock: clocks.TimingBackend
    calls: dict[str, Any]
    first: dict[str, arms.FirstCall]
    placements: bool
    options: dict[str, Any]


class Measurer:
    """The measuring process's role: runs cases through the pipeline on its ``Device``."""

    def __init__(self, options: Options, device: Device) -> None:
        self.options, self.device = options, device
        self._stores: dict[str, expectations.Store] = {}
        self.context_lost: str | None = None

    def expected(self, param: CaseParam, chapter: str) -> Expected | None:
        """The recorded expectation of ``param`` on this hardware (``<n>x_<hardware>`` for several GPUs)."""
        hardware = self.device.hardware_for(param.gpus)
        if hardware not in self._stores:
            root = self.device.rootdir / self.options.expectations_dir
            self._stores[hardware] = expectations.Store(root, hardware, lenient=self.options.update is not None)
        entry = self._stores[hardware].get(chapter, param.id)
        return Expected.from_entry(entry) if entry else None

    def run(self, param: CaseParam, where: Location) -> dict[str, Any]:
        """The record of one case. After a sticky CUDA error every later case fails at once, naming the case that
        lost the context, instead of failing with CUDA errors that are not its own."""
        __tracebackhide__ = True
        if self.context_lost:
            raise CudaContextLost(f"not run: {self.context_lost}")
        device = self.device
        uuids = sorted(gpu.uuid for gpu in device.gpus[:param.gpus]) if device.custom_backend is None else []
        try:
            with contextlib.ExitStack() as held:
                for uuid in uuids:  # in one order everywhere, so two processes never wait on each other's GPU
                    held.enter_context(lease.exclusive(uuid))
                return self._distributed(param, where) if param.world > 1 else self._single(param, where)
        except Exception as exc:
            if not sticky_cuda_error(exc):
                raise
            self.context_lost = (f"the CUDA context of this process was lost in {where.nodeid} "
                                 f"({str(exc).splitlines()[0]}); no CUDA work can run in it again. Fix that case, "
                                 "then run the cases after it in a fresh process (pytest --lf)")
            raise CudaContextLost(self.context_lost) from exc

    def _single(self, param: CaseParam, where: Location) -> dict[str, Any]:
        __tracebackhide__ = True
        case = param.case
        backend = self.device.backend()
        on = backend.device if backend is not None else "cpu"
        if case.needs_cuda and on != "cuda":
            raise Skip(f"{param.id} needs a CUDA device (it uses pinned memory, streams or CUDA kernels)")
        lacking = machine.lacks_capability(case.min_capability) if on == "cuda" else None
        if lacking:
            raise Skip(f"{param.id} {lacking}")
        self._check_gpu_count(param)
        expected = self.expected(param, where.chapter)
        gate = gate_for(expected, case.min_speedup, case.known_loss)
        check = checks.verify(param, on)
        if backend is None:
            wide = checks.widened(param, on)
            raise Skip(f"timing skipped: no CUDA device. Correctness verified on {on}: {len(check.seeds)} seeds x "
                       f"{len(check.shapes)} shapes, max relative error {check.err_optimized:.2g} "
                       f"(baseline {check.err_baseline:.2g})"
                       f"{f'; {len(check.ablations)} ablation arms checked too' if check.ablations else ''}"
                       f"{f'; {checks.coverage(check)}' if check.tokens else ''}"
                       f"{f', and again in fp32: {checks.coverage(wide)}' if wide else ''}")
        seed = param.seeds(1)[0]
        inputs = list(case.inputs(param.shape, param.dtype, seed, on))
        plan = self._timing(param, backend, inputs, on)
        checks.verify(param, on, shapes=[param.shape], seeds=[seed])
        workload = case.workload(*inputs) if case.workload is not None else None
        budget = case.budget_s or self.options.budget_s
        updating = self.options.update is not None
        timed, clock = plan.calls, plan.clock

        def dispatch() -> dict[str, dict[str, float]]:
            return clocks.dispatch_notes(clock, timed) if plan.options.get("hide_dispatch", True) else {}
        peaks: dict[str, int | None] = {}

        def measured(placement_seed: int, budget_s: float) -> tuple[measure.Samples, Judgement]:
            sets = measure.placements(inputs, seed=placement_seed) if plan.placements else [tuple(inputs)]
            samples = measure.sample_pair(clock, timed["baseline"], timed["optimized"], sets, budget_s=budget_s,
                                          gate=None if updating else gate, **plan.options)
            # after the warm-up, so no first-call workspace counts
            if (case.goal == "memory" or case.max_memory_growth) and not peaks:
                peaks.update((arm, _peak_bytes(clock, fn, inputs, case.memory)) for arm, fn in timed.items())
            host_bound = not plan.options.get("hide_dispatch", True) or any(
                n["late_calls"] >= 0.5 * n["calls"] for n in dispatch().values())
            shift = host_shift(expected.launch_us, self.device.provenance().get("launch_us")) \
                if expected and host_bound else None
            latency_now = {arm: clock.summary(fn) for arm, fn in timed.items()} \
                if isinstance(clock, latency.Latency) else None
            return samples, self._judge(param, samples, expected, gate, peaks=peaks, host_change=shift,
                                        workload=workload, latency_now=latency_now)

        samples, judged = measured(seed, budget)
        remeasured = None
        if judged.verdict.outcome in CONFIRMED and not updating and case.goal not in ("memory", "cold_start"):
            first_judged = judged
            samples, judged = measured(seed + 1, budget * REMEASURE_FACTOR)
            remeasured = {"verdict": first_judged.verdict.outcome.value, "speedup": first_judged.estimate.speedup,
                          "ci": [first_judged.estimate.lo, first_judged.estimate.hi],
                          "reason": first_judged.verdict.reason}
            judged = _with_first(judged, first_judged)
        profile, traces, evidence_note = evidence.gather(
            param, on, judged.verdict.outcome.value, mode=self.options.profile, updating=updating,
            folder=self.options.trace_dir, recorded=expected.profile if expected else None)
        if evidence_note:
            judged = _with_note(judged, evidence_note)
        notes = dispatch()
        energy = {arm: measure.energy_per_call(clock, fn, inputs, self.device.telemetry) if plan.placements else None
                  for arm, fn in timed.items()}
        first = {arm: plan.first.get(arm) for arm in timed}
        built = {arm: record.summarized(ms, wall, energy_mj=energy[arm], peak_bytes=peaks.get(arm),
                                        dispatch=notes.get(arm), first_call_ms=first[arm].ms if first[arm] else None,
                                        compiled_graphs=first[arm].graphs if first[arm] else 0,
                                        latency=clock.summary(fn) if isinstance(clock, latency.Latency) else None)
                 for arm, fn, ms, wall in (("baseline", timed["baseline"], samples.base_ms, samples.base_wall_ms),
                                           ("optimized", timed["optimized"], samples.opt_ms, samples.opt_wall_ms))}
        ablated = ablations.measured(  # after the verdict and the arms' records: never gated, never in their samples
            clock, timed["baseline"], case.ablations, inputs,
            measure.placements(inputs, seed=seed + 2) if plan.placements else [tuple(inputs)],
            budget_s=budget, options=plan.options) if case.ablations else None
        return record.build(param, **vars(where), hardware=self.device.hardware, device=backend.device,
                            backend=clock.name, baseline=built["baseline"], optimized=built["optimized"],
                            estimate=judged.estimate, noise_margin=judged.noise_margin, verdict=judged.verdict,
                            gate=gate, expected=expected, host_change=judged.host_change, remeasured=remeasured,
                            placements=samples.placements, warmup_calls=samples.warmup_calls,
                            correctness=check.to_json(), telemetry=self.device.telemetry_summary(samples.telemetry),
                            ceilings=self.device.ceilings, provenance=self.device.provenance(),
                            build_note=self.device.build_note, workload=workload, time_speedup=judged.time_speedup,
                            profile=profile, traces=traces, ablations=ablated)

    def _timing(self, param: CaseParam, backend: clocks.TimingBackend, inputs: list[Any], on: str) -> Plan:
        """How a case is timed. Most cases: their arms' first calls (compilation) timed apart after the checks'
        compiles are cleared, then samples over input placements under ``arms.no_recompile``. A stateful arm's
        state is not in its inputs, so its case is timed at one placement (and without energy, which would run the
        state on without its resets). A latency case: its declared request-level metric is the sample
        (``latency.Latency``), at one placement. A cold-start case: each call a fresh process (``coldstart.ColdStart``),
        after the case's ``prepare``, with no warm-up and few rounds."""
        case = param.case
        if case.goal == "cold_start":
            clock = coldstart.ColdStart(param, on, self.device.rootdir, timeout_s=self.options.timeout_s or 3600.0)
            clock.prepare()
            return Plan(clock, {"baseline": case.baseline, "optimized": case.optimized}, {}, False,
                        dict(cold=False, hide_dispatch=False, warm=False, min_rounds=COLD_START_ROUNDS))
        arms.fresh_compiles()  # the timing shape compiles for itself, not as a dynamic shape after the checks'
        timed = {"baseline": arms.timed(case.baseline, inputs), "optimized": arms.timed(case.optimized, inputs)}
        first = {arm: arms.first_call(fn, inputs, backend.sync) for arm, fn in timed.items()}
        if case.goal == "latency":
            return Plan(latency.Latency(backend, case.metric), timed, first, False,
                        dict(cold=False, hide_dispatch=False, timed_phase=functools.partial(arms.no_recompile, param.id)))
        return Plan(backend, timed, first, not case.stateful,
                    dict(cold=case.cache == "cold", hide_dispatch=case.host_dispatch == "hidden",
                         telemetry=self.device.telemetry, timed_phase=functools.partial(arms.no_recompile, param.id)))

    def _judge(self, param: CaseParam, samples: measure.Samples, expected: Expected | None, gate: Gate, *,
               peaks: dict[str, int | None] | None = None, host_change: str | None = None,
               workload: dict[str, float] | None = None, throttled: bool = True,
               latency_now: dict[str, Any] | None = None) -> Judgement:
        tele = machine.summarize(samples.telemetry) if throttled and samples.telemetry else {}
        try:
            return judging.judged(param, samples.base_ms, samples.opt_ms, base_wall_ms=samples.base_wall_ms,
                                  opt_wall_ms=samples.opt_wall_ms, expected=expected, gate=gate,
                                  hardware=self.device.hardware_for(param.gpus), min_margin=self.options.min_margin,
                                  peaks=peaks, throttle=sorted(set(tele.get("throttle", [])) & machine.SEVERE_THROTTLE),
                                  host_change=host_change, workload=workload, latency=latency_now)
        except judging.NoPeakMemory as exc:
            raise Skip(str(exc)) from None

    def _distributed(self, param: CaseParam, where: Location) -> dict[str, Any]:
        """A case on ``param.world`` ranks that ``distributed`` starts: never beside other work on this process's
        GPUs, keyed in ``expectations/<world>x_<hardware>/``."""
        __tracebackhide__ = True
        options, case = self.options, param.case
        cpu = options.backend == "cpu" or self.device.custom_backend is not None or not self.device.gpus
        self._check_gpu_count(param, cpu=cpu)
        timed = not cpu or options.backend == "cpu"
        expected = self.expected(param, where.chapter)
        gate = gate_for(expected, case.min_speedup, case.known_loss)
        world = distributed.measure(param, param.world, cuda=not cpu, budget_s=case.budget_s or options.budget_s,
                                    timeout_s=options.timeout_s or 3600, timed=timed)
        check = checks.CheckReport(**max(world.checks, key=lambda c: c["err_optimized"]))
        if not timed:
            raise Skip(f"timing skipped: no CUDA device. Correctness verified on {param.world} gloo ranks, each "
                       f"{len(check.seeds)} seeds x {len(check.shapes)} shapes, max relative error "
                       f"{check.err_optimized:.2g} (baseline {check.err_baseline:.2g})")
        samples = measure.Samples(base_ms=world.base_ms, opt_ms=world.opt_ms, base_wall_ms=world.base_ms,
                                  opt_wall_ms=world.opt_ms)
        arm_latency = world.latency or {}
        judged = self._judge(param, samples, expected, gate, throttled=False, latency_now=world.latency)
        provenance = {**world.provenance, **{k: v for k, v in self.device.provenance().items() if v is not None}}
        return record.build(param, **vars(where), hardware=self.device.hardware_for(param.world),
                            device="cpu" if cpu else "cuda", backend=world.backend,
                            baseline=record.summarized(world.base_ms, latency=arm_latency.get("baseline")),
                            optimized=record.summarized(world.opt_ms, latency=arm_latency.get("optimized")),
                            estimate=judged.estimate, noise_margin=judged.noise_margin, verdict=judged.verdict,
                            gate=gate, expected=expected, host_change=None, remeasured=None, placements=1,
                            warmup_calls=0, correctness=check.to_json(), telemetry=None,
                            ceilings={"busbw_gbps": world.busbw_gbps} if world.busbw_gbps else None,
                            provenance=provenance, build_note=self.device.build_note,
                            compute_only=record.summarized(world.compute_ms) if world.compute_ms else None)

    def _check_gpu_count(self, param: CaseParam, cpu: bool = False) -> None:
        """Skip a multi-GPU case in an xdist worker (one GPU each) or where fewer GPUs are visible; a distributed
        case on gloo ranks (``cpu``) uses no GPU, so a worker runs it."""
        if param.gpus == 1:
            return
        if self.options.xdist_worker and not cpu:
            raise Skip(f"{param.id} uses {param.gpus} GPUs, which an xdist worker (one GPU) cannot: run it without "
                       f"xdist (-n 0), after the single-GPU cases (select them with -m multigpu)")
        if not cpu and len(self.device.gpus) < param.gpus:
            raise Skip(f"{param.id} needs {param.gpus} GPUs; this process sees {len(self.device.gpus)}")


def _peak_bytes(backend: clocks.TimingBackend, fn: Any, inputs: list[Any], memory: str) -> int | None:
    """Peak device memory of one call of a timed arm (after its ``before_call``): allocated, or reserved."""
    before = getattr(fn, "before_call", None)
    if before is not None:
        before()
    return backend.peak_bytes(fn, inputs, reserved=True) if memory == "reserved" else backend.peak_bytes(fn, inputs)


def _with_note(judged: Judgement, note: str) -> Judgement:
    """The judgement with ``note`` (the kernel evidence of a regression) appended to its reason."""
    return Judgement(judged.estimate, Verdict(judged.verdict.outcome, f"{judged.verdict.reason}; {note}"),
                     judged.noise_margin, judged.host_change, judged.time_speedup)


def _with_first(judged: Judgement, first: Judgement) -> Judgement:
    """The repeat's judgement, its reason naming the first measurement it replaced."""
    est = first.estimate
    reason = (f"{judged.verdict.reason} (first measurement {first.verdict.outcome.value} at {est.speedup:.3g}x "
              f"[{est.lo:.3g}, {est.hi:.3g}]; measured again at fresh placements)")
    return Judgement(judged.estimate, Verdict(judged.verdict.outcome, reason), judged.noise_margin,
                     judged.host_change, judged.time_speedup)
