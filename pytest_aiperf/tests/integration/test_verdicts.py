"""Each verdict, end to end on the CPU clock: the floor gate, a recorded expectation, and noise."""

from __future__ import annotations

import json


def test_a_clear_win_passes_the_floor_and_says_no_expectation_is_recorded(run_toy):
    result = run_toy("-rA")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r".*double-fp32-1024 .* PASS .*", r".*no expectation recorded for cpu.*"])


def test_a_slower_optimized_arm_is_regressed_and_fails(run_toy, monkeypatch):
    monkeypatch.setenv("AIPERF_TOY_BASE_MS", "0.5")
    monkeypatch.setenv("AIPERF_TOY_OPT_MS", "3")
    result = run_toy()
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*REGRESSED: speedup 0\.\d+x \[.*below the floor.*"])


def test_a_recorded_expectation_gates_the_next_run_and_blames_the_slower_arm(run_toy, chapter, monkeypatch):
    run_toy("--update-expectations").assert_outcomes(passed=1)
    entry = json.loads((chapter.path / "expectations/cpu/ch90_toy.json").read_text())["entries"]["double-fp32-1024"]
    assert 3 < entry["speedup"] < 12, entry
    monkeypatch.setenv("AIPERF_TOY_OPT_MS", "3")
    result = run_toy()
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*REGRESSED: .* below the cpu band .* the optimized arm got slower.*"])


def test_a_much_faster_optimized_arm_is_improved_and_proposes_an_update(run_toy, monkeypatch):
    run_toy("--update-expectations").assert_outcomes(passed=1)
    monkeypatch.setenv("AIPERF_TOY_BASE_MS", "15")
    result = run_toy()
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.re_match_lines([r".*ImprovedBeyondExpectation.*--update-expectations.*", r".* IMPROVED .*"])


def scripted_device(script: str) -> str:
    """A conftest whose timing backend reports the time ``script(arm, k, hide_dispatch)`` for the k-th timed call of
    an arm (``arm`` is the variant's name, k counts from 0), after a short real sleep."""
    return f"""
import time

{script}

class ScriptedDevice:
    name, device, hardware, l2_bytes = "scripted", "cpu", "scripted", 0

    def __init__(self):
        self.calls = {{}}

    def flush(self):
        pass

    def sync(self):
        pass

    def time_call(self, fn, args, hide_dispatch=True):
        fn(*args)
        time.sleep(0.0002)
        k = self.calls[fn.__name__] = self.calls.get(fn.__name__, -1) + 1
        ms = script(fn.__name__, k, hide_dispatch)
        return ms, ms

    def peak_bytes(self, fn, args):
        return None

def pytest_aiperf_backend(config):
    return ScriptedDevice()
"""


SCRIPTED_DEVICE = scripted_device("""
def script(arm, k, hide_dispatch):
    # each arm alternates 1.0 and 1.5 ms, out of phase: equal medians, a speedup interval around 1.0
    return 1.0 + 0.5 * ((k + (arm == "optimized_double")) % 2)
""")


def test_equal_arms_against_a_floor_of_one_are_inconclusive_and_fail_only_when_strict(chapter, monkeypatch):
    test_file = chapter.path / "suites/ch90/test_toy.py"
    test_file.write_text(test_file.read_text().replace("min_speedup=1.5", "min_speedup=1.0"))
    chapter.makeconftest(SCRIPTED_DEVICE)
    monkeypatch.setenv("AIPERF_TOY_BASE_MS", "0")
    monkeypatch.setenv("AIPERF_TOY_OPT_MS", "0")
    relaxed = chapter.runpytest("--aiperf-budget=0.2", "-p", "no:cacheprovider")
    relaxed.assert_outcomes(passed=1, warnings=1)
    relaxed.stdout.re_match_lines([r".*InconclusiveMeasurement.*straddles.*", r".*double-fp32-1024 .*INCONCLUSIVE\*.*"])
    strict = chapter.runpytest("--aiperf-budget=0.2", "--aiperf-strict", "-p", "no:cacheprovider")
    strict.assert_outcomes(failed=1)
    strict.stdout.re_match_lines([r".*INCONCLUSIVE: speedup \d\.\d+x \[.*straddles.*"])


TRANSIENT_DEVICE = scripted_device("""
def script(arm, k, hide_dispatch):
    # baseline 3 ms; the optimized arm takes 2.5 ms for its first 25 timed calls, then 0.5 ms
    if arm != "optimized_double":
        return 3.0
    return 2.5 if k < 25 else 0.5
""")


def test_a_regression_that_does_not_reproduce_at_fresh_placements_passes_and_says_so(chapter, monkeypatch):
    chapter.makeconftest(TRANSIENT_DEVICE)
    monkeypatch.setenv("AIPERF_TOY_BASE_MS", "0")
    monkeypatch.setenv("AIPERF_TOY_OPT_MS", "0")
    junit = chapter.path / "junit.xml"
    result = chapter.runpytest("--aiperf-budget=0.3", "-p", "no:cacheprovider", f"--junitxml={junit}")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r".*double-fp32-1024 .*6\.00x.*PASS\*.*"])
    reason = junit.read_text()
    assert "first measurement REGRESSED at 1.2x" in reason and "measured again at fresh placements" in reason, reason


DISPATCH_BOUND_DEVICE = scripted_device("""
def script(arm, k, hide_dispatch):
    # the optimized arm is 0.5 ms of device work behind 2.4 ms of host dispatch; the baseline 3 ms either way
    if arm != "optimized_double":
        return 3.0
    return 0.5 if hide_dispatch else 2.9
""")


def test_a_case_that_times_host_dispatch_is_timed_without_the_dispatch_hold(chapter, monkeypatch):
    chapter.makeconftest(DISPATCH_BOUND_DEVICE)
    monkeypatch.setenv("AIPERF_TOY_BASE_MS", "0")
    monkeypatch.setenv("AIPERF_TOY_OPT_MS", "0")
    args = ("--aiperf-budget=0.3", "-p", "no:cacheprovider")
    chapter.runpytest(*args).assert_outcomes(passed=1)
    test_file = chapter.path / "suites/ch90/test_toy.py"
    test_file.write_text(test_file.read_text().replace("min_speedup=1.5", 'min_speedup=1.5, host_dispatch="timed"'))
    result = chapter.runpytest(*args)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*REGRESSED: speedup 1\.03x .*below the floor.*"])
