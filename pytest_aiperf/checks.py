"""Correctness before timing: both variants against a high-precision reference, on fresh seeded inputs.

One tolerance policy, keyed by dtype, measured as the relative error norm ``||out - ref|| / ||ref||``:

- the baseline must itself be accurate: ``err(baseline) <= BOUND[dtype]`` (else the case is broken);
- the optimized may not be much worse than the baseline: ``err(optimized) <= K * err(baseline) + BOUND[dtype] / 10``
  (the torchbench rule), so an all-zeros or unwritten output (error 1.0, or NaN) can never pass;
- a pair that changes precision on purpose declares ``Tolerance(rel, reason)``: the optimized arm is held to
  ``err <= rel`` and the baseline to the looser of ``rel`` and its dtype's bound.

Outputs are poisoned before every checked call: output buffers passed in as inputs are NaN-filled, and the
allocator is primed with NaN-filled blocks of the outputs' sizes, so a kernel that writes nothing returns NaN.
NaN or Inf never passes. A variant that modifies its (non-output) inputs fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pytest_aiperf import tokens
from pytest_aiperf.cases import CaseParam, format_shape
from pytest_aiperf.latency import Timeline

BOUND = {"fp64": 1e-12, "fp32": 1e-4, "tf32": 3e-3, "fp16": 5e-3, "bf16": 3e-2, "fp8e4m3": 1.5e-1}
K = 2.0


class CorrectnessError(AssertionError):
    """The optimized arm (or the baseline) does not compute the reference function."""


@dataclass
class CheckReport:
    seeds: list[int]
    shapes: list[list[int]]
    err_baseline: float = 0.0
    err_optimized: float = 0.0
    bound: float = 0.0
    rule: str = ""
    tokens: dict[str, Any] = field(default_factory=dict)
    ablations: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"seeds": self.seeds, "shapes": self.shapes, "err_baseline": self.err_baseline,
                "err_optimized": self.err_optimized, "bound": self.bound, "rule": self.rule,
                "tokens": self.tokens or None, **({"ablations": self.ablations} if self.ablations else {})}


def _merged(total: dict[str, Any] | None, one: dict[str, Any]) -> dict[str, Any]:
    """Token comparisons summed over the checked shapes and seeds: positions compared and near-ties met."""
    if total is None:
        return {"compared": one["compared"], "positions": one["requests"] * one["positions"],
                "near_ties": len(one["near_ties"])}
    return {"compared": total["compared"] + one["compared"],
            "positions": total["positions"] + one["requests"] * one["positions"],
            "near_ties": total["near_ties"] + len(one["near_ties"])}


def torch_dtype(name: str) -> Any:
    import torch

    return {"fp64": torch.float64, "fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16,
            "bf16": torch.bfloat16, "fp8e4m3": torch.float8_e4m3fn, "int8": torch.int8, "int32": torch.int32,
            "int64": torch.int64}[name]


def as_tuple(out: Any) -> tuple[Any, ...]:
    """An arm's outputs as a tuple, without a latency arm's ``Timeline`` (when tokens were seen, not what they are)."""
    return tuple(o for o in (out if isinstance(out, (tuple, list)) else (out,)) if not isinstance(o, Timeline))


def upcast(inputs: Sequence[Any]) -> list[Any]:
    import torch

    return [x.to(torch.float64) if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs]


def output_positions(inputs: Sequence[Any], outputs: Sequence[Any]) -> list[int]:
    """Indices of inputs that a variant returned: its output buffers, poisoned before every checked call."""
    import torch

    ptrs = {o.data_ptr() for o in outputs if isinstance(o, torch.Tensor) and o.numel()}
    return [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.numel() and x.data_ptr() in ptrs]


def poison(tensors: Sequence[Any]) -> None:
    import torch

    for t in tensors:
        if isinstance(t, torch.Tensor):
            t.fill_(float("nan") if t.is_floating_point() else torch.iinfo(t.dtype).max)


def prime_allocator(like: Sequence[tuple[Any, ...]]) -> None:
    """Leave NaN-filled blocks of the outputs' sizes in the caching allocator for the next call to pick up."""
    import torch

    blocks = [torch.empty(shape, dtype=dtype, device=device) for shape, dtype, device in like]
    poison(blocks)
    del blocks


def _likes(outputs: Sequence[Any]) -> list[tuple[Any, ...]]:
    """(shape, dtype, device) of each tensor output: what to prime the allocator with."""
    import torch

    return [(tuple(o.shape), o.dtype, o.device) for o in outputs if isinstance(o, torch.Tensor)]


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rel_error(out: Any, ref: Any) -> tuple[float, str]:
    """Relative error norm of ``out`` against ``ref`` and a description of the worst element."""
    import torch

    if not isinstance(out, torch.Tensor):
        return float("inf"), f"returned {type(out).__name__}, expected a tensor"
    if tuple(out.shape) != tuple(ref.shape):
        return float("inf"), f"shape {tuple(out.shape)}, expected {tuple(ref.shape)}"
    got = out.detach().to(torch.float64)
    want = ref.detach().to(torch.float64).to(got.device)
    diff = (got - want).abs()
    bad = ~torch.isfinite(got) & torch.isfinite(want)
    if bad.any():
        idx = _unravel(int(bad.flatten().nonzero()[0]), got.shape)
        return float("nan"), f"non-finite output at index {idx}: got {got[idx].item()}, expected {want[idx].item()}"
    if not ref.is_floating_point():
        mismatches = int((got != want).sum())
        if not mismatches:
            return 0.0, ""
        idx = _unravel(int((got != want).flatten().nonzero()[0]), got.shape)
        return float("inf"), f"{mismatches} integer mismatches, first at {idx}: got {got[idx].item()}, expected {want[idx].item()}"
    norm = float(torch.linalg.vector_norm(want))
    err = float(torch.linalg.vector_norm(diff)) / (norm if norm > 0 else 1.0)
    if diff.numel() == 0:
        return err, ""
    idx = _unravel(int(torch.nan_to_num(diff, nan=float("inf")).argmax()), got.shape)
    return err, f"worst element at index {idx}: got {got[idx].item():.6g}, expected {want[idx].item():.6g}"


def _in_place_hint(inputs: Sequence[Any], ptr: int | None, out_positions: Sequence[int]) -> str:
    """Why an output that is one of the arm's inputs (at address ``ptr``) came out wrong, or an empty string."""
    hits = [i for i in out_positions if inputs[i].data_ptr() == ptr]
    return (f". The output is input #{hits[0]}, treated as an output buffer and NaN-poisoned before the call: a "
            f"variant that reads it computes in place and modifies its input") if hits else ""


def _unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    idx = []
    for dim in reversed(list(shape)):
        idx.append(flat % dim)
        flat //= dim
    return tuple(reversed(idx))


def run_checked(fn: Callable[..., Any], inputs: Sequence[Any], out_positions: Sequence[int], like: Sequence[Any],
                device: str) -> tuple[Any, ...]:
    """Call ``fn`` with poisoned outputs; fail if it modifies an input that is not an output buffer."""
    __tracebackhide__ = True
    import torch

    poison([inputs[i] for i in out_positions])
    guarded = {i: x.clone() for i, x in enumerate(inputs)
               if isinstance(x, torch.Tensor) and i not in out_positions and x.numel() <= 1 << 24}
    prime_allocator(like)
    outputs = as_tuple(fn(*inputs))
    synchronize(device)
    for i, before in guarded.items():
        if not torch.equal(before, inputs[i]) and not (before.isnan().any() and before.isnan().equal(inputs[i].isnan())):
            raise CorrectnessError(f"{getattr(fn, '__name__', fn)} modified its input #{i}: a variant must be a pure "
                                   f"function of its inputs (return output buffers it writes)")
    return outputs


def verify(param: CaseParam, device: str, shapes: Sequence[Sequence[int]] | None = None,
           seeds: Sequence[int] | None = None) -> CheckReport:
    """Check both arms against the reference on every shape and seed; raise CorrectnessError on the first miss."""
    __tracebackhide__ = True
    case = param.case
    shapes = [tuple(s) for s in (shapes if shapes is not None else case.check_shapes)]
    seeds = list(seeds if seeds is not None else param.seeds(3))
    bound = case.tolerance.rel if case.tolerance else BOUND.get(param.dtype, 0.0)
    report = CheckReport(seeds=seeds, shapes=[list(s) for s in shapes], bound=bound,
                         rule=(f"declared tolerance {case.tolerance.rel:g} ({case.tolerance.reason})" if case.tolerance
                               else f"err(optimized) <= {K:g} x err(baseline) + {bound:g}/10, err(baseline) <= {bound:g}"))
    for shape in shapes:
        for seed in seeds:
            _check_one(param, shape, seed, device, report)
    return report


def widened(param: CaseParam, device: str) -> CheckReport | None:
    """A token case in bf16 or fp16 checked again in fp32 on a machine without a GPU (None for another case): the
    near-tie band of a 16-bit dtype stops most of the CPU's comparisons after a few positions (the small check
    models' top logits lie close), while fp32's resolves nearly every one, so a token dropped or taken from a draft
    late in a sequence is caught."""
    if param.case.token_reference is None or param.dtype not in ("bf16", "fp16"):
        return None
    return verify(CaseParam(param.case, param.shape, "fp32", param.world), device)


def coverage(report: CheckReport) -> str:
    """The token positions the optimized arm's comparisons covered, as a phrase ("" for a case without tokens)."""
    found = report.tokens.get("optimized")
    return f"tokens compared at {found['compared']} of {found['positions']} positions" if found else ""


def _check_one(param: CaseParam, shape: tuple[int, ...], seed: int, device: str, report: CheckReport) -> None:
    """One shape and seed: the baseline against the reference, then the optimized arm and every ablation arm
    (``Case.ablations``) against it by the same rule."""
    __tracebackhide__ = True
    case = param.case
    where = f"seed {seed}, shape {format_shape(shape)}, dtype {param.dtype}, device {device}"
    inputs = list(case.inputs(shape, param.dtype, seed, device))
    arms = {"baseline": case.baseline, "optimized": case.optimized,
            **{f"ablation {name}": arm for name, arm in case.ablations.items()}}
    layout, counts = {}, {}  # each arm's output buffers among its inputs and its outputs' sizes, from a warm-up call
    for label, fn in arms.items():
        warm_inputs = list(case.inputs(shape, param.dtype, seed, device))
        warm = as_tuple(fn(*warm_inputs))
        synchronize(device)
        layout[label], counts[label] = (output_positions(warm_inputs, warm), _likes(warm)), len(warm)
        del warm_inputs, warm
    if case.token_reference is not None and counts["baseline"] == 1:
        refs: tuple[Any, ...] = (None,)  # the arms' only output is tokens, which token_reference checks
    else:
        refs = as_tuple((case.reference or case.baseline)(*upcast(inputs)))
        synchronize(device)
    outputs, ptrs = {}, {}
    for label, fn in arms.items():
        raw = run_checked(fn, inputs, *layout[label], device)
        ptrs[label] = [getattr(o, "data_ptr", lambda: None)() for o in raw]
        aliased = {inputs[i].data_ptr() for i in layout[label][0]}  # a later arm's call poisons these buffers
        outputs[label] = tuple(o.clone() if ptr in aliased else o for o, ptr in zip(raw, ptrs[label]))
        if len(outputs[label]) != len(refs):
            raise CorrectnessError(f"{label} returned {len(outputs[label])} outputs, the reference {len(refs)} "
                                   f"({where})")
    if case.token_reference is not None:  # the first output is generated tokens, checked by ``tokens.compare``
        for label, outs in outputs.items():
            try:
                found = tokens.compare(label, outs[0], case.token_reference(*upcast(inputs), outs[0]),
                                       BOUND.get(param.dtype, report.bound))
            except tokens.TokenMismatch as exc:
                raise CorrectnessError(f"{exc} ({where})") from None
            report.tokens[label] = _merged(report.tokens.get(label), found.to_json())
        refs, outputs = refs[1:], {label: outs[1:] for label, outs in outputs.items()}
        ptrs = {label: found[1:] for label, found in ptrs.items()}
    first = 1 if case.token_reference else 0
    base_bound = max(BOUND.get(param.dtype, 0.0), case.tolerance.rel) if case.tolerance else report.bound
    errors = {label: [] for label in arms}
    for n, ref in enumerate(refs):
        out = f" output #{n + first}" if len(refs) > 1 or case.token_reference else ""
        err_b, worst_b = rel_error(outputs["baseline"][n], ref)
        errors["baseline"].append(err_b)
        if not err_b <= base_bound:
            raise CorrectnessError(f"baseline{out} disagrees with the float64 reference: relative error {err_b:.3g} > "
                                   f"{base_bound:g} for {param.dtype} ({where}); {worst_b}")
        limit = case.tolerance.rel if case.tolerance else K * err_b + report.bound / 10
        for label in list(arms)[1:]:
            err_o, worst_o = rel_error(outputs[label][n], ref)
            errors[label].append(err_o)
            if not err_o <= limit:
                raise CorrectnessError(
                    f"{label}{out} disagrees with the float64 reference: relative error {err_o:.3g} > bound "
                    f"{limit:.3g} [{report.rule}; baseline error {err_b:.3g}] ({where}); {worst_o}"
                    f"{_in_place_hint(inputs, ptrs[label][n], layout[label][0])}")
    report.err_baseline = max([report.err_baseline, *errors["baseline"]])
    report.err_optimized = max([report.err_optimized, *errors["optimized"]])
    for name in case.ablations:
        report.ablations[name] = max([report.ablations.get(name, 0.0), *errors[f"ablation {name}"]])
