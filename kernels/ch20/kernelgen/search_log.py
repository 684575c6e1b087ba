"""The search log: what happened to every candidate of one search, as JSON and as the text the CLI prints.

Each candidate of the space ends at one stage: ``static`` (rejected before compiling, with the reasons),
``not_sampled`` (valid, but outside the seeded sample of a large space), ``compile`` (nvcc failed: its message),
``ptxas`` (spills or low occupancy from ``-Xptxas -v``), ``verify`` (wrong, with the check's message), ``timed``
(measured against the incumbent; its measurements are listed per rung), or ``promoted``. The counts say how many
were rendered, compiled, verified and timed; the decision says why the winner was or was not promoted.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kernels.ch20.kernelgen.search import Decision, Measurement
from kernels.ch20.kernelgen.space import Candidate

STAGES = ("static", "not_sampled", "compile", "ptxas", "verify", "timed", "promoted")


@dataclass
class SearchLog:
    family: str
    target: dict[str, int]
    space_size: int
    incumbent: str
    mode: str = ""
    seed: int = 0
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    decision: Decision | None = None
    outcome: str = ""
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    _clock: float = field(default_factory=time.perf_counter)

    def stage(self, candidate: Candidate, stage: str, reasons: list[str] | None = None, **info: Any) -> None:
        """Record that ``candidate`` reached (and, unless timed, ended at) ``stage``."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
        self.entries[candidate.name] = {"params": candidate.values, "stage": stage, "reasons": reasons or [], **info}

    def phase(self, name: str) -> None:
        """Close the phase that ran since the last call (its wall seconds are kept under ``name``)."""
        now = time.perf_counter()
        self.phases[name] = round(now - self._clock, 3)
        self._clock = now

    def counts(self) -> dict[str, int]:
        ended = Counter(e["stage"] for e in self.entries.values())
        rendered = sum(ended[s] for s in STAGES[2:])
        compiled = rendered - ended["compile"]
        verified = ended["timed"] + ended["promoted"]
        return {"space": self.space_size, "rejected_static": ended["static"], "not_sampled": ended["not_sampled"],
                "rendered": rendered, "compiled": compiled, "rejected_compile": ended["compile"],
                "rejected_ptxas": ended["ptxas"], "verified": verified, "rejected_wrong": ended["verify"],
                "timed": len({m.name for m in self.measurements}), "promoted": ended["promoted"]}

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "target": self.target, "mode": self.mode, "seed": self.seed,
                "incumbent": self.incumbent, "counts": self.counts(), "phases_s": self.phases,
                "outcome": self.outcome, "notes": self.notes, "decision": None if self.decision is None else {
                    "winner": self.decision.winner, "promote": self.decision.promote,
                    "reason": self.decision.reason, "measurement": self.decision.measurement.to_json()},
                "measurements": [m.to_json() for m in self.measurements], "candidates": self.entries}

    def format(self) -> str:
        """The log as text: counts, rejections grouped by stage, measurements by rung, the decision."""
        c = self.counts()
        lines = [f"kernelgen search: {self.family} at {self.target}, {self.mode}, seed {self.seed}, incumbent "
                 f"{self.incumbent}",
                 f"space {c['space']}: {c['rejected_static']} rejected before compiling, {c['not_sampled']} not "
                 f"sampled, {c['rendered']} rendered, {c['compiled']} compiled ({c['rejected_compile']} failed), "
                 f"{c['rejected_ptxas']} rejected by ptxas, {c['verified']} verified ({c['rejected_wrong']} wrong), "
                 f"{c['timed']} timed, {c['promoted']} promoted",
                 "phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items())]
        for stage in ("static", "compile", "ptxas", "verify"):
            rejected = {n: e for n, e in self.entries.items() if e["stage"] == stage}
            if rejected:
                lines.append(f"rejected at {stage} ({len(rejected)}):")
                lines += [f"  {n}: {'; '.join(e['reasons'])[:400]}" for n, e in sorted(rejected.items())]
        for m in self.measurements:
            e = m.estimate
            lines.append(f"  rung {m.rung} ({m.budget_s:g} s) {m.name}: {e.speedup:.3f}x [{e.lo:.3f}, {e.hi:.3f}] "
                         f"over {e.rounds} rounds")
        if self.decision is not None:
            verdict = "PROMOTED" if self.decision.promote else "not promoted"
            lines.append(f"winner {self.decision.winner}: {verdict}: {self.decision.reason}")
        if self.outcome:
            lines.append(self.outcome)
        return "\n".join(lines + self.notes)
