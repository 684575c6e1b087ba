"""The gate, checked on a real GPU (skipped elsewhere): false alarms, detection power, timing accuracy, controls.

Run on a CUDA machine after recording chapter 1 (``pytest suites/ch01 -m perf --update-expectations``):

    pytest pytest_aiperf/tests/device -k identical_arms --update-expectations -o aiperf_expectations=/tmp/aa
    pytest pytest_aiperf/tests/device -o aiperf_expectations=/tmp/aa --junitxml=proof.xml
    (the planted case reads chapter 1's expectation from expectations/, so pass that folder for it:
    pytest pytest_aiperf/tests/device -k planted)
"""

from __future__ import annotations

import pytest
import torch

from kernels.ch01 import tensor_core_bf16
from pytest_aiperf import Case, Tolerance
from pytest_aiperf.checks import CorrectnessError
from pytest_aiperf.clocks import CudaEvents
from pytest_aiperf.judging import MeasurementError

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

BF16 = Tolerance(rel=2e-2, reason="bf16 tensor cores against the fp32 reference")
SHAPES = dict(check_shapes=[(17, 9, 13)], time_shapes=[(4096, 4096, 4096)], dtypes=["fp32"])
PLANT = {"cycles": 0}


def first_copy(a, b):
    return tensor_core_bf16.optimized_bf16_tensor_cores(a, b)


def second_copy(a, b):
    return tensor_core_bf16.optimized_bf16_tensor_cores(a, b)


def planted_inputs(shape, dtype, seed, device):
    """Chapter 1's inputs; on the GPU, also size a spin of 15% of the optimized arm's time (outside timing)."""
    a, b = tensor_core_bf16.inputs(shape, dtype, seed, device)
    if device == "cuda" and shape == (4096, 4096, 4096):
        events = CudaEvents()
        opt_ms = sorted(events.time_call(tensor_core_bf16.optimized_bf16_tensor_cores, (a, b))[0] for _ in range(21))[10]
        spin_ms = sorted(events.time_call(torch.cuda._sleep, (1_000_000,))[0] for _ in range(11))[5]
        PLANT["cycles"] = int(0.15 * opt_ms / spin_ms * 1_000_000)
    return a, b


def slowed_by_15_percent(a, b):
    """The chapter 1 optimized arm plus a device-side spin of 15% of its own time."""
    if PLANT["cycles"]:
        torch.cuda._sleep(PLANT["cycles"])
    return tensor_core_bf16.optimized_bf16_tensor_cores(a, b)


def unjoined_side_stream(a, b):
    """Does its work on a side stream and returns without making the current stream wait for it."""
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        out = tensor_core_bf16.optimized_bf16_tensor_cores(a, b)
    return out


def nop(a, b):
    return torch.empty(a.shape[0], b.shape[1], device=a.device, dtype=a.dtype)


IDENTICAL = Case(name="identical_arms", baseline=first_copy, optimized=second_copy, inputs=tensor_core_bf16.inputs,
                 tolerance=BF16, min_speedup=0.5, **SHAPES)
PLANTED = Case(name="tensor_core_bf16", baseline=tensor_core_bf16.baseline_fp32_gemm, optimized=slowed_by_15_percent,
               inputs=planted_inputs, tolerance=BF16, min_speedup=1.5, **SHAPES)
SIDE = Case(name="side_stream", baseline=first_copy, optimized=unjoined_side_stream, inputs=tensor_core_bf16.inputs,
            tolerance=BF16, **SHAPES)
NOP = Case(name="nop_kernel", baseline=first_copy, optimized=nop, inputs=tensor_core_bf16.inputs, tolerance=BF16,
           **SHAPES)


@pytest.mark.parametrize("repeat", range(20))
@pytest.mark.perf_pair(IDENTICAL)
def test_identical_arms_are_never_regressed(pair, repeat, aiperf):
    aiperf.run(pair)


@pytest.mark.parametrize("repeat", range(10))
@pytest.mark.perf_pair(PLANTED, chapter="ch01_performance_basics")
def test_a_planted_15_percent_slowdown_is_regressed(pair, repeat, aiperf):
    with pytest.raises(pytest.fail.Exception, match="REGRESSED: .*the optimized arm got slower"):
        aiperf.run(pair)


@pytest.mark.perf_pair(SIDE)
def test_work_on_an_unjoined_side_stream_is_never_timed_as_free(pair, aiperf, request):
    """Either the cross-check catches the escaped work, or the events saw it and the arm is timed with it.

    Seen on an H100 (torch 2.11): the end event on the default stream also covered the side stream's GEMM
    (0.377 ms against 0.313 ms for the joined arm), so the cheat gained nothing and was judged REGRESSED.
    """
    from pytest_aiperf.plugin import RECORD

    with pytest.raises((MeasurementError, pytest.fail.Exception)) as failure:
        aiperf.run(pair)
    if failure.type is not MeasurementError:
        rec = request.node.stash[RECORD]
        assert rec["optimized"]["median_ms"] >= 0.9 * rec["baseline"]["median_ms"], rec["reason"]


@pytest.mark.perf_pair(NOP)
def test_a_nop_kernel_returns_poison_and_fails_correctness(pair, aiperf):
    with pytest.raises(CorrectnessError, match="non-finite output"):
        aiperf.run(pair)


def test_event_timing_agrees_with_triton_do_bench_within_5_percent(request):
    from triton.testing import do_bench

    a, b = tensor_core_bf16.inputs((4096, 4096, 4096), "fp32", 0, "cuda")
    fn = tensor_core_bf16.optimized_bf16_tensor_cores
    events = CudaEvents()
    for _ in range(20):
        events.time_call(fn, (a, b))
    ours = []
    for _ in range(200):
        events.flush()
        ours.append(events.time_call(fn, (a, b))[0])
    ours_ms = sorted(ours)[len(ours) // 2]
    theirs_ms = do_bench(lambda: fn(a, b), warmup=100, rep=500, return_mode="median")
    request.node.user_properties.extend([("aiperf_ms", ours_ms), ("do_bench_ms", theirs_ms)])
    assert ours_ms >= 0.05 and abs(ours_ms / theirs_ms - 1) <= 0.05, f"aiperf {ours_ms:.4f} ms, do_bench {theirs_ms:.4f} ms"
