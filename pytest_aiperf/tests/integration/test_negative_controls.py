"""Negative controls: kernels that must fail, each for the right reason."""

from __future__ import annotations

import json
import textwrap

import pytest

CONTROL = '''
import time
import pytest
import torch
from pytest_aiperf import Case

def inputs(shape, dtype, seed, device):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g).to(device),)

def baseline(x):
    time.sleep(0.002)
    return torch.exp(x)

{optimized}

@pytest.mark.perf_pair(Case(name="control", baseline=baseline, optimized=optimized, inputs=inputs,
                            check_shapes=[(5, 7), (31,)], time_shapes=[(64,)]))
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
'''

SIDE_STREAM_DEVICE = '''
import time

class SimulatedDevice:
    """Events see only the current stream; work queued on the side stream runs when the device syncs."""
    name, device, hardware, l2_bytes = "sim-events", "cpu", "sim", 0

    def __init__(self):
        self.side_ms = 0.0

    def launch_on_side_stream(self, ms):
        self.side_ms += ms

    def flush(self):
        pass

    def sync(self):
        time.sleep(self.side_ms / 1e3)
        self.side_ms = 0.0

    def time_call(self, fn, args, hide_dispatch=True):
        t0 = time.perf_counter()
        out = fn(*args)
        t1 = time.perf_counter()
        self.sync()
        return (t1 - t0) * 1e3, (time.perf_counter() - t0) * 1e3

    def peak_bytes(self, fn, args):
        return None

DEVICE = SimulatedDevice()

def pytest_aiperf_backend(config):
    return DEVICE
'''

# A nop kernel that returns its output buffer untouched. The baseline wrote the right answer into that buffer on the
# checked call before, so only the NaN poisoning of output buffers makes the nop fail, and fail with NaN.
NOP_KERNEL = '''
def inputs(shape, dtype, seed, device):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(device), torch.zeros(shape, device=device)

def baseline(x, out):
    time.sleep(0.002)
    return torch.exp(x, out=out)

def optimized(x, out):
    return out
'''

CONTROLS = {
    "wrong_result": ("def optimized(x):\n    return torch.exp(x) * 1.001",
                     r".*optimized disagrees with the float64 reference: relative error .*worst element.*"),
    "nop_kernel": (NOP_KERNEL, r".*optimized disagrees with the float64 reference: relative error nan > .*; non-finite "
                               r"output at index \(0, 0\): got nan, expected .*"),
    "slower_optimized": ("def optimized(x):\n    time.sleep(0.004)\n    return torch.exp(x)",
                         r".*REGRESSED: speedup 0\.\d+x.*"),
    "in_place": ("def optimized(x):\n    return x.exp_()",
                 r".*non-finite output.*computes in place and modifies its input.*"),
    "input_mutating": ("def optimized(x):\n    x.add_(0.5)\n    return torch.exp(x - 0.5)",
                       r".*modified its input #0: a variant must be a pure function.*"),
}


@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_a_bad_optimized_arm_fails_for_the_right_reason(pytester, control):
    body, reason = CONTROLS[control]
    pytester.makepyfile(test_control=textwrap.dedent(CONTROL).replace("{optimized}", body))
    result = pytester.runpytest("--aiperf-backend=cpu", "--aiperf-budget=0.3", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([reason])


def test_work_left_on_an_unjoined_side_stream_fails_the_cross_check(pytester):
    pytester.makeconftest(SIDE_STREAM_DEVICE)
    body = ("from conftest import DEVICE\n\ndef optimized(x):\n"
            "    DEVICE.launch_on_side_stream(3.0)\n    return torch.exp(x)")
    pytester.makepyfile(test_control=textwrap.dedent(CONTROL).replace("{optimized}", body))
    result = pytester.runpytest("--aiperf-budget=0.3", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*optimized arm of control-fp32-64: .*Work escaped the current stream.*"])


HANGING_CASE = '''

def optimized_hang(x):
    if os.environ.get("AIPERF_TOY_HANG"):
        time.sleep(600)
    return x + x


CASES_HANG = [Case(name="hang", baseline=baseline_double, optimized=optimized_hang, inputs=inputs,
                   check_shapes=[(7,)], time_shapes=[(1024,)], min_speedup=1.5)]


@pytest.mark.perf_pair(*CASES_HANG)
def test_z_hangs(pair, aiperf):
    aiperf.run(pair)
'''


def test_a_hung_case_ends_the_run_with_a_clear_message_and_keeps_what_finished(chapter, monkeypatch):
    """The hang starts only after the first case passed; its record and expectation must survive the exit."""
    test_file = chapter.path / "suites/ch90/test_toy.py"
    test_file.write_text(test_file.read_text() + HANGING_CASE)
    monkeypatch.setenv("AIPERF_TOY_HANG", "1")
    result = chapter.runpytest_subprocess("--aiperf-backend=cpu", "--aiperf-budget=1", "-p", "no:cacheprovider",
                                          "--aiperf-timeout=6", "--update-expectations", "-p", "no:randomly")
    assert result.ret == 124, result.stdout.str() + result.stderr.str()
    result.stdout.re_match_lines([r".*test_z_hangs\[hang-fp32-1024\] ran past its time limit of 6 s.*",
                                  r".*aiperf \(cases that finished\).*", r"double-fp32-1024 .* PASS .*",
                                  r".*ch90_toy .*double-fp32-1024 .* new .*"])
    result.stderr.re_match_lines([r".*in optimized_hang.*"])
    entries = json.loads((chapter.path / "expectations/cpu/ch90_toy.json").read_text())["entries"]
    assert list(entries) == ["double-fp32-1024"]


FAULTING_CASES = '''

def optimized_faults(x):
    raise RuntimeError("CUDA error: an illegal memory access was encountered\\nCUDA kernel errors might be reported "
                       "asynchronously")


CASES_FAULT = [Case(name="fault", baseline=baseline_double, optimized=optimized_faults, inputs=inputs,
                    check_shapes=[(7,)], time_shapes=[(1024,)])]
CASES_AFTER = [Case(name="after", baseline=baseline_double, optimized=optimized_double, inputs=inputs,
                    check_shapes=[(7,)], time_shapes=[(1024,)])]


@pytest.mark.perf_pair(*CASES_FAULT)
def test_b_faults(pair, aiperf):
    aiperf.run(pair)


@pytest.mark.perf_pair(*CASES_AFTER)
def test_c_runs_after_the_fault(pair, aiperf):
    aiperf.run(pair)
'''


def test_after_a_sticky_cuda_error_later_cases_fail_at_once_naming_the_case_that_lost_the_context(run_toy, chapter):
    test_file = chapter.path / "suites/ch90/test_toy.py"
    test_file.write_text(test_file.read_text() + FAULTING_CASES)
    result = run_toy("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)
    lost = r"the CUDA context of this process was lost in suites/ch90/test_toy.py::test_b_faults\[fault-fp32-1024\] "
    result.stdout.re_match_lines([
        rf"E .*CudaContextLost: {lost}\(CUDA error: an illegal memory access was encountered\); no CUDA work can .*",
        rf"E .*CudaContextLost: not run: {lost}.*pytest --lf.*"], consecutive=False)
