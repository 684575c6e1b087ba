"""One search, stage by stage: static constraints, seeded selection, compile, ptxas, verify, time, decide.

Candidates leave at the first stage that rejects them, with the reason in the log; only verified candidates are
ever timed, so a wrong kernel (the planted tail bug, however fast) can never win. The stages that touch a compiler
or a device are injected (``Stages``): the CLI passes the real ones (``build_candidates.compile_all``,
``verification.verify`` on the CPU then the GPU, launchers through ``CudaLibrary``); the tests pass a fake timing
backend, and fake compilers where the compiler is not what they test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from kernels.ch20.kernelgen import constraints, search
from kernels.ch20.kernelgen.build_candidates import Built
from kernels.ch20.kernelgen.family import Family
from kernels.ch20.kernelgen.search_log import SearchLog
from kernels.ch20.kernelgen.space import Candidate

LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Stages:
    compile: Callable[[list[Candidate]], dict[Candidate, Built]]
    verify: Callable[[Candidate, Built], str | None]  # None: correct
    arm: Callable[[Candidate, Built], Callable[..., Any]]  # the function that is timed


@dataclass
class Result:
    log: SearchLog
    winner: Candidate | None = None
    built: Built | None = None
    promote: bool = False


def select(candidates: Sequence[Candidate], families: dict[str, Family], policy: search.Policy,
           log: SearchLog) -> list[Candidate]:
    """The candidates that pass the static constraints, all of them or a seeded sample (logged either way)."""
    valid = []
    for candidate in candidates:
        reasons = constraints.static_reasons(families[candidate.family], candidate)
        if reasons:
            log.stage(candidate, "static", reasons)
        else:
            valid.append(candidate)
    valid.sort()
    if len(valid) <= policy.exhaustive_max:
        log.mode = f"exhaustive over {len(valid)} valid candidates"
        return valid
    chosen = sorted(random.Random(policy.seed).sample(valid, min(policy.sample, len(valid))))
    picked = set(chosen)
    for candidate in valid:
        if candidate not in picked:
            log.stage(candidate, "not_sampled")
    log.mode = f"successive halving over a seeded sample of {len(chosen)} of {len(valid)} valid candidates"
    return chosen


def checked(chosen: list[Candidate], families: dict[str, Family], stages: Stages,
            log: SearchLog) -> dict[Candidate, Built]:
    """Compile, read ptxas, verify; the candidates left standing, with their builds."""
    builds = stages.compile(chosen)
    log.phase("compile")
    passed: dict[Candidate, Built] = {}
    for candidate in chosen:
        built = builds[candidate]
        if built.library is None:
            log.stage(candidate, "compile", ["\n".join(built.log.strip().splitlines()[-LOG_TAIL_LINES:])])
            continue
        registers = {f"V={k.vec},H={k.held}": k.registers for k in built.kernels}
        reasons = constraints.compiled_reasons(families[candidate.family], candidate, built.kernels)
        if reasons:
            log.stage(candidate, "ptxas", reasons, registers=registers)
            continue
        wrong = stages.verify(candidate, built)
        if wrong is not None:
            log.stage(candidate, "verify", [wrong], registers=registers)
            continue
        log.stage(candidate, "timed", registers=registers)
        passed[candidate] = built
    log.phase("verify")
    return passed


def run(candidates: Sequence[Candidate], families: dict[str, Family], *, stages: Stages, timer: search.Timer,
        log: SearchLog) -> Result:
    """The whole search over ``candidates``; the result names the winner and whether it is to be promoted."""
    policy = timer.policy
    log.seed = policy.seed
    chosen = select(candidates, families, policy, log)
    log.phase("static")
    result = Result(log)
    passed = checked(chosen, families, stages, log) if chosen else {}
    if not passed:
        log.outcome = "nothing to time: no candidate passed every check"
        return result
    by_name = {c.name: c for c in passed}
    arms = {c.name: stages.arm(c, built) for c, built in passed.items()}
    rank = search.exhaustive if len(chosen) <= policy.exhaustive_max else search.successive_halving
    name, measured = rank(timer, arms)
    log.measurements += measured
    decision = search.decide(timer, name, arms[name], rung=max((m.rung for m in measured), default=-1) + 1)
    log.measurements.append(decision.measurement)
    log.decision = decision
    log.phase("time")
    result.winner, result.built, result.promote = by_name[name], passed[by_name[name]], decision.promote
    if decision.promote:
        log.stage(by_name[name], "promoted", registers=log.entries[name].get("registers"))
    log.outcome = f"{'promoted' if decision.promote else 'kept the incumbent over'} {name}"
    return result
