"""A case is data: two variants of one computation, how to make their inputs, and what to expect.

A chapter module declares ``Case`` objects and hands them to the ``perf_pair`` marker; the plugin expands
each case into one test per (dtype, timing shape), with ids that read like descriptions
(``batched_matmul-fp32-64x128x128``). Nothing here imports torch or touches a device.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

Goal = Literal["speed", "memory", "throughput", "latency", "cold_start"]
CacheMode = Literal["cold", "warm"]
DispatchMode = Literal["hidden", "timed"]
Shape = tuple[int, ...]

DTYPES = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8e4m3", "int8", "int32", "int64")
GOALS = ("speed", "memory", "throughput", "latency", "cold_start")


@dataclass(frozen=True)
class Work:
    """What one call of a variant must do at least: the napkin math behind the roofline columns.

    ``bytes`` counts each input read once and each output written once (device memory);
    ``flops`` counts floating-point operations (a multiply-add is 2); ``items`` counts the units a
    serving-style case is judged by (samples, tokens, requests), named by ``item_name``.
    ``flops_at`` names the precision the optimized arm's flops run at (``"bf16"`` for a pair that moves fp32
    work onto bf16 tensor cores), so its TFLOP/s are compared with the matching measured ceiling.
    """

    bytes: float = 0.0
    flops: float = 0.0
    items: float = 0.0
    item_name: str = ""
    flops_at: str = ""


@dataclass(frozen=True)
class Tolerance:
    """A declared, looser error bound for a pair that changes precision on purpose (fp32 -> bf16)."""

    rel: float
    reason: str

    def __post_init__(self) -> None:
        if not (0 < self.rel < 1):
            raise ValueError(f"Tolerance.rel must be in (0, 1), got {self.rel}")
        if not self.reason.strip():
            raise ValueError("Tolerance needs a reason: say which precision change it covers")


@dataclass(frozen=True)
class Guard:
    """A secondary bound of a latency case, checked on the same calls as its metric: the optimized arm's
    ``metric`` ("ttft_p50", "tokens_per_s", ...: ``latency.METRICS`` or "tokens_per_s") may be at most ``max_worse``
    times worse than the baseline's (slower for a time, fewer for tokens per second). Chunked prefill, gated on its
    p99 time per output token, guards its time to first token and its throughput this way."""

    metric: str
    max_worse: float

    def __post_init__(self) -> None:
        from pytest_aiperf.latency import METRICS

        if self.metric not in (*METRICS, "tokens_per_s") or not self.max_worse >= 1:
            raise ValueError(f"Guard takes a latency metric or tokens_per_s and max_worse >= 1, got {self.metric!r}, "
                             f"{self.max_worse!r}")


@dataclass(frozen=True)
class Stateful:
    """An arm whose work mutates state that lives across calls (the parameters and optimizer moments of a training
    loop, a KV cache, a captured graph, an engine's pools).

    ``setup(*inputs) -> state`` builds the state; ``run(state)`` is the work that is timed and returns the outputs
    checked (final parameters, every logged loss, every generated token); ``reset(state)`` returns the state to
    what ``setup`` made. ``setup`` and ``reset`` never run inside the timed region: before every timed call the
    state is reset, or, without ``reset``, built again by ``setup``. Called like a plain arm, ``arm(*inputs)`` is
    ``run(setup(*inputs))``, a pure function of the inputs, which is how correctness is checked (the rule that an
    arm must not modify its inputs holds for the case's inputs: ``setup`` copies what ``run`` will change)."""

    setup: Callable[..., Any]
    run: Callable[[Any], Any]
    reset: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        if not callable(self.setup) or not callable(self.run) or (self.reset is not None and not callable(self.reset)):
            raise ValueError("Stateful takes callables: setup(*inputs) -> state, run(state), reset(state) or None")

    @property
    def __name__(self) -> str:
        return getattr(self.run, "__name__", "stateful arm")

    def __call__(self, *inputs: Any) -> Any:
        return self.run(self.setup(*inputs))


Inputs = Callable[[Shape, str, int, str], Sequence[Any]]
WorkModel = Callable[[Shape, str], Work]


@dataclass(frozen=True)
class Case:
    """One optimization: ``baseline(*inputs)`` and ``optimized(*inputs)`` compute the same thing.

    ``inputs(shape, dtype, seed, device)`` builds fresh, seeded inputs (tensors on ``device``);
    a variant is a pure function of them and returns a tensor or a tuple of tensors.
    ``reference`` (default: the baseline on inputs upcast to float64) gives the high-precision answer.
    ``min_speedup`` is the hardware-independent floor: the claim that the technique wins at all,
    used where no expectation is recorded for the hardware.
    ``known_loss`` declares, with its reason, that the optimized arm measures below ``min_speedup`` on some hardware:
    only then is such a loss recorded and gated by its expectation; the summary lists these cases.
    ``host_dispatch="timed"`` is for cases whose arms do host work that is part of the lesson (the launch path,
    file reads, CPU preprocessing, pageable copies): the events then start before the host dispatches the call,
    instead of after a hold (see ``clocks``) that hides a call's first 50-400 us of dispatch.
    ``min_capability`` (for example ``(9, 0)`` for TMA, wgmma, clusters or FP8 on Hopper) skips the case, with that
    reason, on a GPU of a lower compute capability; a case whose arms have no CPU path also declares ``needs_cuda``.
    ``world_sizes`` (for example ``(2, 4)``) makes a distributed case, measured once per world size on that many
    ranks (one process per GPU) that the plugin starts itself (see ``distributed``). ``devices`` (for example 2, for
    a peer-to-peer copy) makes a single-process case that drives that many GPUs: the current device is the first,
    the timing events are on its current stream, so each arm joins its work on the others back to that stream.
    Either kind of multi-GPU case is marked ``multigpu``, never runs in an xdist worker (one GPU each), and keeps its
    expectations under ``<gpus>x_<hardware>``.
    An arm is a function or a ``Stateful`` arm (setup and reset outside the timed region). A compiled arm
    (``torch.compile``, Triton autotuning, graph capture) compiles on its first call, which is timed apart and
    reported (``first_call_ms``), never among the samples; a recompilation during timing fails the case naming the
    guard that failed.
    ``token_reference(*inputs_float64, tokens) -> logits``, for arms whose first output is generated token ids
    ``[requests, positions]``, gives the reference's teacher-forced logits ``[requests, positions, vocab]`` at each
    position of a candidate sequence: the tokens must be the reference's greedy choice at every position, except
    that the comparison of a request stops, and says so, at the first position whose top-two logits are closer than
    the dtype can resolve. Where the tokens are the arms' only output, ``reference`` is not called.
    ``memory`` (goal "memory") names the peak that is compared: "allocated" bytes, or "reserved" by the caching
    allocator where the lesson is the allocator; ``max_memory_growth``, on a time goal, is the reverse bound: the
    optimized arm's peak at most that many times the baseline's (a speed win under a memory ceiling, as selective
    checkpointing), else REGRESSED; ``max_slowdown`` bounds the time cost a memory win may have (for
    example 1.45: the optimized arm at most 1.45x slower), recorded beside the memory ratio.
    ``workload(*inputs) -> {name: value}`` returns statistics of the work that decide a speedup (acceptance rate,
    prefix hit rate, padding fraction, tokens per expert); they are recorded with the expectation, and a run whose
    statistics differ from the recording's by more than ``workload_tolerance`` (relative) is INCONCLUSIVE.
    ``goal="cold_start"`` times each arm's first call in a fresh process with empty compile caches, every sample
    (``coldstart``): the arms and ``inputs`` must be module-level functions a fresh process can import.
    ``prepare(folder)``, for such a case, runs once in its own process before the samples and leaves in ``folder``
    what an arm reuses (saved compile artifacts), which the arms find in ``$AIPERF_COLD_START_DIR``.
    ``goal="latency"`` gates the request-level ``metric`` ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99",
    "e2e_p50", "e2e_p99"; ``latency.METRICS``) of arms that return their outputs and a ``latency.Timeline``.
    ``guards`` (latency cases) bound the other request metrics of the optimized arm against the baseline's
    (``Guard``): a gated win that costs more than declared elsewhere fails on its own reason.
    ``compute_only``, for an overlap pair, is the same computation without its communication, called with the same
    inputs; timed beside the arms on every rank, never verified; only for distributed cases. The report subtracts it
    from the baseline to tell the communication's time, its bus bandwidth, and how much of it the optimized arm hides.
    ``ablations`` (``{"no_prefix_cache": arm, ...}``), for an end-to-end stack, are the optimized arm with one technique
    removed each: checked like the arms, timed after the verdict against the baseline, and reported, never gated
    (``ablations``); for single-process speed, throughput and latency cases.
    """

    name: str
    baseline: Callable[..., Any]
    optimized: Callable[..., Any]
    inputs: Inputs
    time_shapes: Sequence[Shape]
    check_shapes: Sequence[Shape]
    dtypes: Sequence[str] = ("fp32",)
    work: WorkModel | None = None
    goal: Goal = "speed"
    min_speedup: float = 1.2
    known_loss: str | None = None
    tolerance: Tolerance | None = None
    reference: Callable[..., Any] | None = None
    cache: CacheMode = "cold"
    host_dispatch: DispatchMode = "hidden"
    needs_cuda: bool = False
    budget_s: float | None = None
    min_capability: tuple[int, int] | None = None
    world_sizes: Sequence[int] = ()
    devices: int = 1
    compute_only: Callable[..., Any] | None = None
    token_reference: Callable[..., Any] | None = None
    memory: Literal["allocated", "reserved"] = "allocated"
    max_slowdown: float | None = None
    max_memory_growth: float | None = None
    workload: Callable[..., dict[str, float]] | None = None
    workload_tolerance: float = 0.05
    prepare: Callable[[str], None] | None = None
    metric: str | None = None
    guards: tuple[Guard, ...] = ()
    ablations: Mapping[str, Callable[..., Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"case name {self.name!r} must be lower_snake_case: it names kernels/<chapter>/<name>.py")
        for dtype in self.dtypes:
            if dtype not in DTYPES:
                raise ValueError(f"case {self.name}: unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
        if self.goal not in GOALS:
            raise ValueError(f"case {self.name}: goal must be one of {GOALS}, got {self.goal!r}")
        if self.cache not in ("cold", "warm"):
            raise ValueError(f"case {self.name}: cache must be 'cold' or 'warm', got {self.cache!r}")
        if self.host_dispatch not in ("hidden", "timed"):
            raise ValueError(f"case {self.name}: host_dispatch must be 'hidden' or 'timed', got {self.host_dispatch!r}")
        if not self.time_shapes or not self.check_shapes:
            raise ValueError(f"case {self.name}: needs at least one timing shape and one check shape")
        if self.min_speedup <= 0:
            raise ValueError(f"case {self.name}: min_speedup must be positive")
        if self.known_loss is not None and (not isinstance(self.known_loss, str) or not self.known_loss.strip()):
            raise ValueError(f"case {self.name}: known_loss is None or the reason the optimized arm measures below "
                             f"min_speedup, got {self.known_loss!r}")
        if self.min_capability is not None:
            given = self.min_capability
            if not isinstance(given, tuple) or len(given) != 2 or not all(isinstance(v, int) for v in given):
                raise ValueError(f"case {self.name}: min_capability must be (major, minor), got {self.min_capability!r}")
        if any(not isinstance(w, int) or w < 2 for w in self.world_sizes):
            raise ValueError(f"case {self.name}: world_sizes are rank counts of 2 or more, got {self.world_sizes!r}")
        if not isinstance(self.devices, int) or self.devices < 1 or (self.devices > 1 and self.world_sizes):
            raise ValueError(f"case {self.name}: devices is the GPU count of one process (1 or more, and 1 for a "
                             f"distributed case, whose ranks have one GPU each), got {self.devices!r}")
        if self.compute_only is not None and (not callable(self.compute_only) or not self.world_sizes):
            raise ValueError(f"case {self.name}: compute_only, an overlap pair's computation without its "
                             f"communication, is a function timed on the ranks of a distributed case (world_sizes)")

        if self.memory not in ("allocated", "reserved"):
            raise ValueError(f"case {self.name}: memory is 'allocated' or 'reserved', got {self.memory!r}")
        if self.max_memory_growth is not None and (self.goal in ("memory", "cold_start")
                                                   or not self.max_memory_growth > 0):
            raise ValueError(f"case {self.name}: max_memory_growth (> 0) bounds the peak memory of a time goal, got "
                             f"{self.max_memory_growth!r} with goal {self.goal!r}")
        if self.max_slowdown is not None and (self.goal != "memory" or not self.max_slowdown >= 1):
            raise ValueError(f"case {self.name}: max_slowdown (>= 1) bounds the time cost of a memory goal, got "
                             f"{self.max_slowdown!r} with goal {self.goal!r}")
        if self.goal == "cold_start":
            from pytest_aiperf.coldstart import qualified

            for fn in (self.baseline, self.optimized, self.inputs, *([self.prepare] if self.prepare else [])):
                qualified(fn)
        elif self.prepare is not None:
            raise ValueError(f"case {self.name}: prepare belongs to a cold_start case")
        if (self.goal == "latency") != (self.metric is not None):
            raise ValueError(f"case {self.name}: a latency goal names its metric, and only a latency goal does "
                             f"(goal {self.goal!r}, metric {self.metric!r})")
        if self.metric is not None:
            from pytest_aiperf.latency import METRICS

            if self.metric not in METRICS:
                raise ValueError(f"case {self.name}: metric {self.metric!r} is not one of {METRICS}")
        if self.guards and (self.goal != "latency" or not all(isinstance(g, Guard) for g in self.guards)):
            raise ValueError(f"case {self.name}: guards are Guard objects of a latency case")
        if self.ablations and (self.world_sizes or self.goal not in ("speed", "throughput", "latency") or not all(
                name.isidentifier() and name == name.lower() and callable(arm) for name, arm in self.ablations.items())):
            raise ValueError(f"case {self.name}: ablations map lower_snake_case names to arms, for a single-process "
                             f"speed, throughput or latency case")
        if not 0 < self.workload_tolerance < 1:
            raise ValueError(f"case {self.name}: workload_tolerance is relative, in (0, 1), got "
                             f"{self.workload_tolerance!r}")

    @property
    def stateful(self) -> bool:
        """Whether an arm is ``Stateful``: its state is not in the inputs, so it is timed at one input placement."""
        return isinstance(self.baseline, Stateful) or isinstance(self.optimized, Stateful)

    def params(self) -> list[CaseParam]:
        """One parameter per (dtype, timing shape, world size), in declaration order."""
        return [CaseParam(self, tuple(shape), dtype, world) for dtype in self.dtypes for shape in self.time_shapes
                for world in (self.world_sizes or (1,))]


@dataclass(frozen=True)
class CaseParam:
    """A case at one dtype, timing shape and world size (ranks; 1 for a single-GPU case): what one test measures."""

    case: Case
    shape: Shape
    dtype: str
    world: int = 1
    id: str = field(init=False)

    def __post_init__(self) -> None:
        gpus = f"-{self.gpus}gpus" if self.gpus > 1 else ""
        object.__setattr__(self, "id", f"{self.case.name}-{self.dtype}-{format_shape(self.shape)}{gpus}")

    @property
    def gpus(self) -> int:
        """The GPUs the case uses: its ranks, or the devices its one process drives."""
        return self.world if self.world > 1 else self.case.devices

    def seeds(self, count: int = 3) -> list[int]:
        """Seeds derived from the id, so any case reproduces alone and every case gets its own."""
        base = zlib.crc32(self.id.encode())
        return [(base + 7919 * i) % (2**31 - 1) for i in range(count)]

    def work_model(self) -> Work:
        """The case's work model; a distributed case's also gets ``world=`` (its bytes are what each rank moves over
        the interconnect, which depends on the rank count)."""
        if not self.case.work:
            return Work()
        return self.case.work(self.shape, self.dtype, world=self.world) if self.world > 1 else \
            self.case.work(self.shape, self.dtype)


def format_shape(shape: Shape) -> str:
    return "x".join(str(int(dim)) for dim in shape)


def chapter_of(relpath: str) -> str:
    """``suites/ch01/test_performance_basics.py`` -> ``ch01_performance_basics``.

    The chapter names the expectations file; the path is taken relative to the rootdir and a leading
    ``suites`` folder is dropped, so the names mirror across ``suites/``, ``kernels/`` and ``expectations/``.
    """
    parts = [p for p in relpath.replace("\\", "/").split("/") if p]
    if parts and parts[0] == "suites":
        parts = parts[1:]
    stem = parts[-1]
    stem = stem[:-3] if stem.endswith(".py") else stem
    stem = stem[5:] if stem.startswith("test_") else stem
    return "_".join([*parts[:-1], stem])
