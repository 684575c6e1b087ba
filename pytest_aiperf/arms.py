"""An arm as the measuring process calls it: state built outside the timed region, compilation done (and timed)
before the samples, and no compilation allowed among them.

- ``timed(arm, inputs)``: what the measuring loop calls. A plain arm is itself; a ``Stateful`` arm becomes a
  ``StatefulCall`` whose state ``setup`` built once here, and whose ``before_call`` (which ``measure`` runs before
  every timed call, outside the clock) resets it, or builds it again where the arm has no ``reset``.
- ``first_call``: the wall time of an arm's first call on the timing inputs, synchronized, with the number of graphs
  ``torch.compile`` compiled during it. It runs after ``fresh_compiles`` cleared what the correctness checks
  compiled on other shapes, so the timing shape compiles for itself (``torch.compile`` would otherwise recompile it
  with dynamic shapes after the checks' second shape: a different kernel than a user's static one).
- ``no_recompile``: the timed phase runs under ``torch.compiler.set_stance("fail_on_recompile")``, so a guard that
  fails while samples are taken raises with the guard named (``RecompiledDuringTiming``) instead of silently timing a
  recompiled or eager fallback; the count of compiled graphs is compared before and after, for compiles the stance
  does not cover.

Nothing here imports torch's compiler unless a case already did (``torch._dynamo`` in ``sys.modules``).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from pytest_aiperf.cases import Stateful


class RecompiledDuringTiming(AssertionError):
    """``torch.compile`` compiled again while samples were taken: the samples would time the compile or a
    fallback, not the arm."""


class StatefulCall:
    """A ``Stateful`` arm bound to its state: ``before_call()`` outside the timed region, then ``__call__()``."""

    def __init__(self, arm: Stateful, inputs: Sequence[Any]) -> None:
        self.arm, self.inputs = arm, tuple(inputs)
        self.state = arm.setup(*self.inputs)
        self.__name__ = arm.__name__

    def before_call(self) -> None:
        if self.arm.reset is not None:
            self.arm.reset(self.state)
        else:
            self.state = self.arm.setup(*self.inputs)

    def __call__(self, *_placement: Any) -> Any:
        return self.arm.run(self.state)


def timed(arm: Callable[..., Any], inputs: Sequence[Any]) -> Callable[..., Any]:
    """What the measuring loop calls for ``arm`` on ``inputs``."""
    return StatefulCall(arm, inputs) if isinstance(arm, Stateful) else arm


def _dynamo() -> Any:
    """``torch._dynamo`` where a case has imported it (anything compiled), else None."""
    return sys.modules.get("torch._dynamo")


def compiled_graphs() -> int:
    """Graphs ``torch.compile`` has compiled in this process so far (0 where nothing was compiled)."""
    dynamo = _dynamo()
    if dynamo is None:
        return 0
    return int(dynamo.utils.counters["stats"]["unique_graphs"])


def fresh_compiles() -> None:
    """Forget what ``torch.compile`` compiled so far (the correctness checks' shapes)."""
    dynamo = _dynamo()
    if dynamo is not None:
        dynamo.reset()


@dataclass(frozen=True)
class FirstCall:
    """An arm's first call on the timing inputs: its synchronized wall time and the graphs compiled during it."""

    ms: float
    graphs: int


def first_call(fn: Callable[..., Any], args: Sequence[Any], sync: Callable[[], None]) -> FirstCall:
    """Call ``fn`` once (after its ``before_call``), synchronized, and say how long it took and what it compiled."""
    before = getattr(fn, "before_call", None)
    if before is not None:
        before()
    sync()
    graphs = compiled_graphs()
    start = time.perf_counter()
    out = fn(*args)
    sync()
    elapsed = (time.perf_counter() - start) * 1e3
    del out
    return FirstCall(ms=elapsed, graphs=compiled_graphs() - graphs)


@contextlib.contextmanager
def no_recompile(label: str) -> Iterator[None]:
    """The timed phase of ``label``: a recompilation inside it raises ``RecompiledDuringTiming``."""
    dynamo = _dynamo()
    if dynamo is None:
        yield
        return
    import torch

    graphs = compiled_graphs()
    stance = getattr(torch.compiler, "set_stance", None)
    guard = stance("fail_on_recompile") if stance is not None else contextlib.nullcontext()
    try:
        with guard:
            yield
    except RuntimeError as exc:
        if "fail_on_recompile" not in str(exc):
            raise
        raise RecompiledDuringTiming(f"{label}: torch.compile recompiled during timing, so the samples would time a "
                                     f"compile or a fallback; make the arm's guards stable after its first call "
                                     f"(what changed is below).\n{exc}") from None
    added = compiled_graphs() - graphs
    if added:
        raise RecompiledDuringTiming(f"{label}: torch.compile compiled {added} new graph(s) during timing, so the "
                                     f"samples would time a compile; compile every graph the arm needs in its first "
                                     f"call")
