"""The kernel evidence of a regression: which kernels changed between the recorded profile and this run's."""

from __future__ import annotations

from pytest_aiperf import evidence, kernel_diff
from pytest_aiperf.kernel_diff import KernelChange

RECORDED = {"baseline": {"aten::add": 50.0, "aten::copy_": 400.0},
            "optimized": {"aten::mul": 41.0, "aten::add": 10.0, "aten::empty": 2.0}}


def test_a_slower_kernel_reads_as_the_arm_the_kernel_and_both_times():
    now = {**RECORDED, "optimized": {**RECORDED["optimized"], "aten::mul": 63.0}}
    assert kernel_diff.changes(RECORDED, now) == [KernelChange("optimized", "aten::mul", 41.0, 63.0)]
    sentence = kernel_diff.changes(RECORDED, now)[0].sentence()
    assert sentence == "the optimized arm's `aten::mul` went from 41 us to 63 us"


def test_new_and_gone_kernels_are_named_as_such_with_their_time():
    now = {"baseline": RECORDED["baseline"], "optimized": {"aten::add": 10.0, "aten::cumsum": 300.0}}
    sentences = [c.sentence() for c in kernel_diff.changes(RECORDED, now)]
    assert sentences == ["the optimized arm's `aten::cumsum` is new (300 us)",
                         "the optimized arm's `aten::mul` is gone (was 41 us)"]


def test_changes_are_ranked_by_size_across_both_arms_and_cut_to_the_top_three():
    recorded = {"baseline": {"a": 100.0, "b": 100.0}, "optimized": {"c": 100.0, "d": 100.0}}
    now = {"baseline": {"a": 150.0, "b": 300.0}, "optimized": {"c": 400.0, "d": 90.0}}
    assert [(c.arm, c.kernel) for c in kernel_diff.changes(recorded, now)] == \
        [("optimized", "c"), ("baseline", "b"), ("baseline", "a")]


def test_launch_jitter_of_tiny_kernels_is_not_evidence():
    now = {"baseline": {"aten::add": 51.0, "aten::copy_": 410.0},
           "optimized": {"aten::mul": 42.5, "aten::add": 10.4, "aten::empty": 2.9}}
    assert kernel_diff.changes(RECORDED, now) == []
    assert kernel_diff.evidence(RECORDED, now).startswith("no kernel's time changed beyond 10% of its arm")


def test_the_evidence_names_both_arms_totals_then_the_changed_kernels():
    now = {**RECORDED, "optimized": {**RECORDED["optimized"], "aten::mul": 900.0}}
    assert kernel_diff.evidence(RECORDED, now) == (
        "since the recorded profile (baseline 450 us -> 450 us, optimized 53 us -> 912 us of kernel time per call), "
        "the optimized arm's `aten::mul` went from 41 us to 900 us")


def test_without_a_recorded_profile_the_evidence_names_the_top_kernels_now():
    text = kernel_diff.evidence(None, RECORDED)
    assert text.startswith("no per-kernel profile was recorded with this expectation (record one with "
                           "--update-expectations --aiperf-profile=regressed)")
    assert "the baseline arm's top kernels: `aten::copy_` 400 us, `aten::add` 50 us" in text
    assert "the optimized arm's top kernels: `aten::mul` 41 us, `aten::add` 10 us, `aten::empty` 2 us" in text


def test_a_malformed_recorded_profile_counts_as_none():
    for recorded in ({"baseline": {"a": "slow"}, "optimized": {}}, {"baseline": {}}, [1, 2], {"baseline": {"a": -1}}):
        assert not kernel_diff.valid(recorded)
        assert kernel_diff.evidence(recorded, RECORDED).startswith("no per-kernel profile was recorded")


def test_a_long_templated_kernel_name_is_cut_in_the_message():
    name = "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, " + "x" * 80
    change = KernelChange("optimized", name, 10.0, 20.0)
    assert change.sentence() == f"the optimized arm's `{name[:93]}...` went from 10 us to 20 us"


def test_a_case_is_profiled_when_regressed_or_recorded_in_mode_regressed_and_always_in_mode_all():
    assert [evidence.wanted("regressed", verdict, updating=False) for verdict in ("PASS", "REGRESSED")] == \
        [False, True]
    assert evidence.wanted("regressed", "PASS", updating=True)
    assert evidence.wanted("all", "PASS", updating=False) and evidence.wanted("all", "INCONCLUSIVE", updating=False)
    assert not evidence.wanted("off", "REGRESSED", updating=True)
