"""kernels.ch19's shared machinery on the CPU (Triton under TRITON_INTERPRET=1): rowwise e4m3 quantization keeps
every element within half an e4m3 step, the emulated rowwise product equals ``torch._scaled_mm`` where the CPU has
it, the fp8 KV decode kernel equals attention over the dequantized cache, the chunked linear cross-entropy's
gradients equal autograd's, selective checkpointing recomputes no matmul, and a swapped-in cache continues with the
tokens a recomputed one gives. Negative controls: a scale on the wrong axis, a scale of the wrong head and a
dropped chunk each fail their case's check."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from kernels import compat
from kernels.ch18.grouped import grouped_attention
from kernels.ch19 import (chunked_linear_cross_entropy, fp8, fp8_kv_cache_decode, fp8_rowwise_training_mlp,
                          kv_swap_vs_recompute, selective_activation_checkpointing)
from kernels.llm import Decoder, KVCache, greedy_generate
from pytest_aiperf import checks
from suites.ch19.test_low_precision_and_memory import CASES

CASE = {case.name: case for case in CASES}
E4M3_STEP = 2.0**-3  # e4m3's spacing relative to a normal value's binade: round-to-nearest errs by half of it


def verify(case, shapes, seeds=(1, 2)):
    return checks.verify(case.params()[0], "cpu", shapes=shapes, seeds=seeds)


@pytest.mark.parametrize("shape", [(33, 64), (1, 16), (5, 5000), (3, 7)])
def test_rowwise_quantization_keeps_every_element_within_half_an_e4m3_step(shape):
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3).to(torch.bfloat16)
    q, scale = fp8.quantize_rows(x)
    ref_q, ref_scale = fp8.quantize_rows_reference(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (shape[0], 1)
    torch.testing.assert_close(scale, ref_scale, rtol=1e-6, atol=0)
    assert (q.float() == ref_q.float()).float().mean() > 0.95  # the rest sit on a tie, rounded from 1 ulp apart
    x = x.float()
    bound = 0.5 * E4M3_STEP * x.abs() + scale * 2.0**-10  # relative for normals, absolute for subnormals
    assert ((fp8.dequantize(q, scale) - x).abs() <= bound * 1.0001).all()
    assert (q.float().abs().amax(dim=1) == fp8.E4M3_MAX).all()


def test_an_all_zero_row_quantizes_to_zeros_with_a_finite_scale():
    q, scale = fp8.quantize_rows(torch.zeros(2, 16, dtype=torch.bfloat16))
    assert not q.float().any() and torch.isfinite(scale).all()


def test_the_emulated_rowwise_product_equals_scaled_mm_where_the_cpu_has_it():
    reason = compat.rowwise_scaled_mm_reason(torch.device("cpu"))
    if reason is not None:
        pytest.skip(reason)
    gen = torch.Generator().manual_seed(0)
    a, scale_a = fp8.quantize_rows(torch.randn(33, 64, generator=gen))
    b, scale_b = fp8.quantize_rows(torch.randn(48, 64, generator=gen))
    native = torch._scaled_mm(a, b.t(), scale_a=scale_a, scale_b=scale_b.t(), out_dtype=torch.float32)
    emulated = fp8.emulated_scaled_mm(a, scale_a, b.t(), scale_b.t(), out_dtype=torch.float32)
    torch.testing.assert_close(native, emulated, rtol=1e-5, atol=1e-5)


def test_the_rowwise_probe_reports_a_scaled_mm_that_fails_or_computes_something_else(monkeypatch):
    def refuses(*args, **kwargs):
        raise RuntimeError("Invalid scaling configuration")

    for fake, expected in ((refuses, "Invalid scaling configuration"),
                           (lambda a, b, **kwargs: torch.zeros(16, 16, dtype=torch.bfloat16), "does not return")):
        monkeypatch.setattr(torch, "_scaled_mm", fake)
        compat.rowwise_scaled_mm_reason.cache_clear()
        try:
            assert expected in compat.rowwise_scaled_mm_reason(torch.device("cpu"))
        finally:
            compat.rowwise_scaled_mm_reason.cache_clear()


@pytest.mark.parametrize("splits", [1, 3])
def test_fp8_decode_kernel_equals_attention_over_the_dequantized_cache(splits):
    q, _, _, k, k_scale, v, v_scale = fp8_kv_cache_decode.inputs((2, 8, 2, 150, 16), "fp32", 0, "cpu")
    out = fp8_kv_cache_decode.fp8_decode(q, k, v, k_scale, v_scale, splits=splits)
    expected = grouped_attention(q.double(), fp8.dequantize(k, k_scale[..., None]).double(),
                                 fp8.dequantize(v, v_scale[..., None]).double())
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tokens, chunk", [(37, 8), (32, 32), (5, 64)])
def test_chunked_cross_entropy_loss_and_gradients_equal_autograd_in_fp32(tokens, chunk):
    h, weight, labels, _ = chunked_linear_cross_entropy.inputs((tokens, 16, 300, chunk), "fp32", 0, "cpu")
    expected = chunked_linear_cross_entropy.baseline_full_logits(h, weight, labels, chunk)
    got = chunked_linear_cross_entropy.optimized_chunked_fused(h, weight, labels, chunk)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)


def test_the_cross_entropy_kernel_rounds_the_logits_gradient_as_autograd_does_in_bf16():
    h, weight, labels, _ = chunked_linear_cross_entropy.inputs((64, 32, 1000, 64), "bf16", 0, "cpu")
    logits = (h @ weight.t()).requires_grad_()
    (expected,) = torch.autograd.grad(F.cross_entropy(logits.float(), labels), logits)
    grad = (h @ weight.t()).contiguous()
    chunked_linear_cross_entropy.cross_entropy_grad_(grad, labels, 1 / 64)
    assert torch.equal(grad, expected)


def test_a_second_backward_through_the_chunked_loss_fails_instead_of_scaling_twice():
    h, weight, labels, chunk = chunked_linear_cross_entropy.inputs((9, 8, 50, 4), "fp32", 0, "cpu")
    h.requires_grad_()
    loss = chunked_linear_cross_entropy.ChunkedLinearCrossEntropy.apply(h, weight, labels, chunk)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


class MatmulCount(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += func is torch.ops.aten.mm.default
        return func(*args, **(kwargs or {}))


def test_selective_checkpointing_recomputes_no_matmul_and_full_checkpointing_all_of_them():
    shape = (64, 2, 2, 17)
    no_recompute = MatmulCount()
    with no_recompute:
        selective_activation_checkpointing.optimized_selective_checkpointing(
            *selective_activation_checkpointing.inputs(shape, "fp32", 0, "cpu"))
    full = MatmulCount()
    with full:
        selective_activation_checkpointing.baseline_full_checkpointing(
            *selective_activation_checkpointing.inputs(shape, "fp32", 0, "cpu"))
    forward = 7 * shape[1]  # q, k, v, o, gate, up, down per layer
    assert no_recompute.calls == 3 * forward  # the forward, then each linear's input and weight gradients
    # non-reentrant checkpointing stops recomputing once every saved tensor is back: down's output is not one
    assert full.calls == no_recompute.calls + 6 * shape[1]


def test_the_swapped_kv_is_the_recomputed_kv_and_both_resumes_continue_with_the_same_tokens():
    tokens, model, host_keys, host_values = kv_swap_vs_recompute.inputs((64, 2, 3, 11), "fp32", 0, "cpu")
    swapped = kv_swap_vs_recompute.optimized_swap_in(tokens, model, host_keys, host_values)
    recomputed = kv_swap_vs_recompute.baseline_recompute_prefill(tokens, model, host_keys, host_values)
    torch.testing.assert_close(swapped, recomputed, rtol=1e-5, atol=1e-5)
    cache = KVCache(model.config, 3, 11, torch.float32, "cpu")
    with torch.no_grad():
        model.prefill(tokens, cache)
    for saved, live in zip(host_keys + host_values, cache.keys + cache.values):
        torch.testing.assert_close(saved, live[:, :, :10], rtol=1e-5, atol=1e-5)
    assert swapped.argmax(-1).tolist() == recomputed.argmax(-1).tolist()
    longer = Decoder(model.config, seed=None, max_positions=32)
    longer.load_state_dict(model.state_dict())
    cache = KVCache(model.config, 3, 17, torch.float32, "cpu")
    for saved, live in zip(host_keys + host_values, cache.keys + cache.values):
        live[:, :, :10].copy_(saved)
    after_swap = [tokens[:, -1:]]
    with torch.no_grad():
        for pos in range(10, 16):
            after_swap.append(longer.decode(after_swap[-1], cache, pos).argmax(-1, keepdim=True))
    assert torch.equal(torch.cat(after_swap[1:], dim=1), greedy_generate(longer, tokens, 6))


def test_a_weight_scale_on_the_wrong_axis_fails_the_fp8_mlp_check(monkeypatch):
    def per_input_channel_scale_applied_per_output_channel(x, x_scale, weight):
        w_t, in_scale = fp8.quantize_rows(weight.t())
        return fp8.scaled_mm_rowwise(x, x_scale, w_t.t().contiguous().t(), in_scale.t())

    monkeypatch.setattr(fp8_rowwise_training_mlp, "fp8_linear", per_input_channel_scale_applied_per_output_channel)
    with pytest.raises(checks.CorrectnessError, match="optimized output #0 disagrees"):
        verify(CASE["fp8_rowwise_training_mlp"], [(17, 64, 64)])


def test_a_key_scale_of_the_wrong_head_fails_the_fp8_kv_cache_check():
    def neighbouring_heads_scales(q, k, v, k_fp8, k_scale, v_fp8, v_scale):
        return fp8_kv_cache_decode.fp8_decode(q, k_fp8, v_fp8, k_scale.roll(1, dims=1).contiguous(), v_scale)

    case = dataclasses.replace(CASE["fp8_kv_cache_decode"], optimized=neighbouring_heads_scales)
    with pytest.raises(checks.CorrectnessError, match="optimized disagrees"):
        verify(case, [(3, 4, 2, 40, 16)])


def test_a_dropped_last_chunk_fails_the_chunked_cross_entropy_check():
    def whole_chunks_only(h, weight, labels, chunk):
        kept = h.shape[0] - h.shape[0] % chunk
        return chunked_linear_cross_entropy.optimized_chunked_fused(h[:kept], weight, labels[:kept], chunk)

    case = dataclasses.replace(CASE["chunked_linear_cross_entropy"], optimized=whole_chunks_only)
    with pytest.raises(checks.CorrectnessError):
        verify(case, [(37, 16, 300, 8)])
