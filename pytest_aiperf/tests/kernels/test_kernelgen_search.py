"""kernels.ch20.kernelgen's search and promotion on a seeded fake device: every timing goes through the real
``measure.sample_pair`` (warm-up, interleaving, stopping rule) and ``stats``; only the clock is scripted. Each arm
has a true time, and each call's time is that times seeded log-normal noise.

Wall-clock budgets decide how many rounds a measurement gets, as on a GPU, so the assertions hold for any round
count a loaded machine allows (at least the loop's floor of 3) rather than for exact digits.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

from kernels.ch20.kernelgen import pipeline, registry, search
from kernels.ch20.kernelgen.build_candidates import Built
from kernels.ch20.kernelgen.constraints import KernelUsage
from kernels.ch20.kernelgen.families import FAMILIES, family
from kernels.ch20.kernelgen.search_log import SearchLog
from kernels.ch20.kernelgen.space import Candidate

ROOT = Path(__file__).resolve().parents[3]


class FakeArm:
    """A timed arm whose device time is ``ms``; calling it does nothing."""

    def __init__(self, name: str, ms: float) -> None:
        self.__name__, self.ms = name, ms

    def __call__(self, *args: Any) -> None:
        return None


class FakeDevice:
    """A TimingBackend whose call time is the arm's true time times exp(N(0, noise)), from a seeded generator.
    Each call also sleeps ``CALL_S`` of wall time, as a device call takes time: a budget then buys tens to hundreds
    of rounds, as on a GPU, instead of the thousands an instant call allows (whose bootstrap alone takes seconds)."""

    name, device, l2_bytes = "fake-device", "cpu", 0
    CALL_S = 2e-4

    def __init__(self, seed: int, noise: float) -> None:
        self.rng, self.noise = random.Random(seed), noise

    def flush(self) -> None:
        return None

    def sync(self) -> None:
        return None

    def time_call(self, fn: Callable[..., Any], args: Sequence[Any], hide_dispatch: bool = True) -> tuple[float, float]:
        time.sleep(self.CALL_S)
        ms = fn.ms * math.exp(self.rng.gauss(0.0, self.noise))
        return ms, ms


def timer(seed: int = 0, noise: float = 0.03, **policy: Any) -> search.Timer:
    chosen = {"rung_s": 0.02, "final_s": 0.3, "seed": seed, **policy}
    return search.Timer(FakeDevice(seed, noise), FakeArm("incumbent", 1.0), [()], search.Policy(**chosen))


def test_a_win_inside_the_noise_margin_is_not_promoted():
    decision = search.decide(timer(), "one_percent_faster", FakeArm("one_percent_faster", 0.99), rung=0)
    assert not decision.promote
    est = decision.measurement.estimate
    assert est.lo < 1 + decision.measurement.margin and decision.measurement.margin >= 0.03
    assert "the incumbent stays" in decision.reason


def test_a_win_that_clears_the_noise_margin_is_promoted():
    decision = search.decide(timer(), "a_quarter_faster", FakeArm("a_quarter_faster", 0.8), rung=0)
    assert decision.promote, decision.reason
    assert decision.measurement.estimate.lo >= 1 + decision.measurement.margin
    assert 1.15 < decision.measurement.estimate.speedup < 1.35


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_successive_halving_keeps_the_true_best_under_noise(seed):
    rng = random.Random(100 + seed)
    truth = {f"c{i:02d}": round(rng.uniform(0.86, 1.05), 4) for i in range(15)}
    truth["best"] = 0.78
    arms = {name: FakeArm(name, ms) for name, ms in truth.items()}
    winner, measured = search.successive_halving(timer(seed, noise=0.05), arms)
    assert winner == "best"
    assert [sum(m.rung == r for m in measured) for r in range(3)] == [16, 4, 0], "16 -> 4 -> 1 with eta 4"
    assert {m.budget_s for m in measured if m.rung == 1} == {0.08}, "each rung has eta times the budget"


def test_exhaustive_times_every_candidate_once_with_the_same_budget():
    arms = {name: FakeArm(name, ms) for name, ms in {"a": 0.95, "b": 0.7, "c": 1.1}.items()}
    winner, measured = search.exhaustive(timer(), arms)
    assert winner == "b"
    assert sorted(m.name for m in measured) == ["a", "b", "c"] and {m.budget_s for m in measured} == {0.08}


def fake_build(candidate: Candidate, *, spills: bool = False, fails: bool = False) -> Built:
    fam = family(candidate.family) if candidate.family in FAMILIES else family("fused_add_rmsnorm")
    held = fam.derive(candidate.values, candidate.target_values)["HELD"]
    usage = KernelUsage(vec=candidate.values["VEC"], held=held, registers=32, stack_bytes=8 if spills else 0,
                        spill_stores=8 if spills else 0, spill_loads=8 if spills else 0)
    return Built(candidate, Path(f"{candidate.name}.cu"), library=None if fails else Path(f"{candidate.name}.so"),
                 log="fake.cu(1): error: expected a ';'" if fails else "", kernels=[usage])


def test_sampling_is_seeded_and_logs_every_candidate_it_leaves_out():
    fam = family("fused_add_rmsnorm")
    picks = []
    for seed in (0, 0, 1):
        log = SearchLog(fam.name, dict(fam.target), fam.space.size, "eager")
        picks.append(pipeline.select(fam.candidates(), {fam.name: fam}, search.Policy(seed=seed, sample=12), log))
        counts = log.counts()
        assert len(picks[-1]) == 12 and counts["not_sampled"] + counts["rejected_static"] + 12 == fam.space.size
    assert picks[0] == picks[1] and picks[0] != picks[2]


def test_a_search_log_accounts_for_every_candidate_and_times_only_verified_ones():
    fam = family("row_softmax")
    candidates = fam.candidates()
    spilling, failing, wrong = candidates[5], candidates[6], candidates[7]
    truth = {c.name: 1.0 - 0.0002 * i for i, c in enumerate(candidates)}  # at best 1.2% faster: inside the noise
    truth[wrong.name] = 0.3  # fast because it skips work: it must never be timed
    stages = pipeline.Stages(
        compile=lambda chosen: {c: fake_build(c, spills=c == spilling, fails=c == failing) for c in chosen},
        verify=lambda c, built: "wrong on cpu: optimized output #0 disagrees" if c == wrong else None,
        arm=lambda c, built: FakeArm(c.name, truth[c.name]))
    log = SearchLog(fam.name, dict(fam.target), fam.space.size, "eager")
    result = pipeline.run(candidates, {fam.name: fam}, stages=stages, timer=timer(rung_s=0.005), log=log)
    counts = log.counts()
    assert counts["rejected_static"] == 3 and counts["rejected_compile"] == 1 and counts["rejected_ptxas"] == 1
    assert counts["rejected_wrong"] == 1 and counts["timed"] == 57 - 3 and counts["promoted"] == 0
    assert log.entries[wrong.name]["stage"] == "verify" and wrong.name not in {m.name for m in log.measurements}
    assert "spills" in log.entries[spilling.name]["reasons"][0]
    assert "expected a ';'" in log.entries[failing.name]["reasons"][0]
    assert result.winner is not None and not result.promote and "the incumbent stays" in log.decision.reason
    assert log.decision.measurement in log.measurements and "not promoted" in log.format()


def test_with_nothing_verified_there_is_nothing_to_time():
    fam = family("row_softmax")
    stages = pipeline.Stages(compile=lambda chosen: {c: fake_build(c, fails=True) for c in chosen},
                             verify=lambda c, built: None, arm=lambda c, built: FakeArm(c.name, 1.0))
    log = SearchLog(fam.name, dict(fam.target), fam.space.size, "eager")
    result = pipeline.run(fam.candidates(), {fam.name: fam}, stages=stages, timer=timer(), log=log)
    assert result.winner is None and log.outcome == "nothing to time: no candidate passed every check"
    assert log.counts()["rejected_compile"] == 57 and "57 compiled" not in log.format()


PROMOTER = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("kernelgen_registry", sys.argv[1])
registry = importlib.util.module_from_spec(spec)
spec.loader.exec_module(registry)
worker = int(sys.argv[3])
for i in range(5):
    registry.promote({"family": "fused_add_rmsnorm", "target": {"hidden": 1024 * (i + 1)}, "hardware": f"gpu{worker}",
                      "candidate": f"c{worker}-{i}", "params": {}, "template_sha256": "0" * 64}, Path(sys.argv[2]))
"""


def test_concurrent_promotions_in_four_processes_merge_under_the_lock(tmp_path):
    path = tmp_path / "generated" / "REGISTRY.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    workers = [subprocess.Popen([sys.executable, "-c", PROMOTER, registry.__file__, str(path), str(w)], env=env)
               for w in range(4)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]
    records = registry.read(path)
    assert len(records) == 20 and records["fused_add_rmsnorm/hidden2048/gpu3"]["candidate"] == "c3-1"
    assert not list(path.parent.glob(".*.tmp")), "no temporary file is left behind"
    path.write_text("[]")
    with pytest.raises(registry.RegistryError, match="not a kernelgen registry"):
        registry.read(path)


def test_a_promotion_writes_the_file_the_ch20_case_loads_and_logs_its_share_of_the_copy_ceiling():
    from kernels.ch20 import generated_fused_add_rmsnorm as generated
    from kernels.ch20.kernelgen import gpu_search

    fam = family("fused_add_rmsnorm")
    assert gpu_search.generated_path(fam, dict(fam.target)) == generated.SOURCE
    log = SearchLog(fam.name, dict(fam.target), fam.space.size, "eager")
    decision = search.decide(timer(), "fast", FakeArm("fast", 0.5), rung=0)
    log.decision = decision
    measured = gpu_search._bandwidth(fam, (16384, 4096), log, {"copy_gbps": 4000.0})
    expected = (4 * 16384 * 4096 + 4096) * 2 / (decision.measurement.candidate_ms * 1e-3) / 1e9
    assert measured["gbps"] == pytest.approx(expected) and measured["fraction_of_copy"] == pytest.approx(expected / 4000)
    assert "of the copy ceiling 4000 GB/s" in log.format()


@pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").is_file(),
                    reason="needs nvcc")
def test_in_a_search_the_planted_tail_bug_is_rejected_however_fast_and_a_correct_candidate_is_promoted(
        tmp_path_factory, monkeypatch):
    from kernels.ch20.kernelgen import build_candidates, verification
    from pytest_aiperf.tests.kernels.test_kernelgen_compile import planted_family, shared_root

    monkeypatch.setenv("AIPERF_CACHE_DIR", str(shared_root(tmp_path_factory) / "kernelgen-cache"))
    monkeypatch.setenv("AIPERF_CUDA_ARCH", "sm_90a")
    folder = tmp_path_factory.mktemp("kernelgen-search")
    fam, planted = family("fused_add_rmsnorm"), planted_family(folder / "planted")
    families = {fam.name: fam, planted.name: planted}
    wrong = planted.candidate(fam.defaults[0])
    good, slower = fam.candidate(fam.defaults[0]), fam.candidate(fam.defaults[1])
    truth = {wrong.name: 0.3, good.name: 0.7, slower.name: 0.9}  # the wrong one skips work, so it looks fastest
    stages = pipeline.Stages(compile=lambda chosen: build_candidates.compile_all(chosen, folder, families),
                             verify=lambda c, built: verification.verify(families[c.family], built, "cpu"),
                             arm=lambda c, built: FakeArm(c.name, truth[c.name]))
    log = SearchLog(fam.name, dict(fam.target), fam.space.size, "eager")
    result = pipeline.run([wrong, good, slower], families, stages=stages, timer=timer(), log=log)
    assert log.entries[wrong.name]["stage"] == "verify" and "disagrees" in log.entries[wrong.name]["reasons"][0]
    assert wrong.name not in {m.name for m in log.measurements}
    assert result.winner == good and result.promote and log.entries[good.name]["stage"] == "promoted"
    assert log.counts()["compiled"] == 3 and log.counts()["verified"] == 2


def test_a_sampled_search_with_one_survivor_measures_it_once_more_and_decides():
    fam = family("fused_add_rmsnorm")
    policy_args = {"exhaustive_max": 2, "sample": 5, "seed": 3}
    log = SearchLog(fam.name, dict(fam.target), fam.space.size, "eager")
    chosen = pipeline.select(fam.candidates(), {fam.name: fam}, search.Policy(**policy_args),
                             SearchLog(fam.name, dict(fam.target), fam.space.size, "eager"))
    survivor = chosen[2]
    stages = pipeline.Stages(compile=lambda picked: {c: fake_build(c, fails=c != survivor) for c in picked},
                             verify=lambda c, built: None, arm=lambda c, built: FakeArm(c.name, 0.6))
    result = pipeline.run(fam.candidates(), {fam.name: fam}, stages=stages, timer=timer(**policy_args), log=log)
    assert result.winner == survivor and result.promote and [m.rung for m in log.measurements] == [0]
    assert "successive halving over a seeded sample of 5" in log.mode and log.counts()["rejected_compile"] == 4
