"""Chapter 16's shared machinery on the CPU: the int8 weight-only Triton kernel (under TRITON_INTERPRET=1) against
the dequantized weights, padded and packed prefill against each prompt alone, the one-step-ahead decode loop against
the synchronous one (stops at EOS included), the piecewise engine against the eager engine, and transformers'
generate against the shared decoder. Each mechanism also has a planted wrong arm that the plugin's check rejects."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from kernels.ch16 import async_step_scheduling, int8_weight_only_decode, varlen_unpadded_prefill
from kernels.ch16.int8_linear import MAX_ROWS, Int8WeightOnlyLinear, int8_linear, quantize_linears, quantize_per_channel
from kernels.ch16.piecewise import Bucket, PiecewiseEngine, buckets_up_to
from kernels.ch16.prefill import packed_last_hidden, padded_last_hidden
from kernels.llm import TINY, Decoder
from kernels.serving import ChunkedPrefill, Engine, LogNormal, PagedPool, serve, synthetic_trace
from pytest_aiperf import Stateful
from pytest_aiperf.cases import CaseParam
from pytest_aiperf.checks import CorrectnessError, verify
from suites.ch16.test_production_inference import CASES

CASE = {case.name: case for case in CASES}


def planted(name: str, **arms) -> CaseParam:
    """The chapter's case with a replaced arm, at its first timing shape (the checks run the check shapes)."""
    case = dataclasses.replace(CASE[name], **arms)
    return CaseParam(case, tuple(case.time_shapes[0]), case.dtypes[0])


def fails_the_check(param: CaseParam) -> str:
    with pytest.raises(CorrectnessError) as caught:
        verify(param, "cpu", shapes=param.case.check_shapes[:1], seeds=[11])
    return str(caught.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("rows", [1, 3, 8, MAX_ROWS])
def test_int8_kernel_equals_the_dequantized_weights(dtype, rows):
    gen = torch.Generator().manual_seed(rows)
    weight = torch.randn(37, 200, generator=gen)
    x = torch.randn(rows, 200, generator=gen).to(dtype)
    q, scale = quantize_per_channel(weight)
    want = x.double() @ (q.double() * scale.double()[:, None]).T
    got = int8_linear(x, q, scale)
    assert got.dtype == dtype and got.shape == (rows, 37)
    assert torch.allclose(got.double(), want, rtol=1e-2 if dtype != torch.float32 else 1e-5, atol=1e-2)


def test_int8_kernel_refuses_more_rows_than_a_decode_batch():
    q, scale = quantize_per_channel(torch.randn(8, 16))
    with pytest.raises(ValueError, match="at most"):
        int8_linear(torch.randn(MAX_ROWS + 1, 16), q, scale)


def test_per_channel_quantization_is_within_half_a_step_of_every_weight():
    weight = torch.randn(64, 300) * torch.linspace(0.01, 3, 64)[:, None]
    weight[5] = 0
    q, scale = quantize_per_channel(weight)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127
    assert (q[torch.arange(64) != 5].abs().amax(dim=1) == 127).all()
    assert ((weight - q.float() * scale[:, None]).abs() <= scale[:, None] / 2 + 1e-7).all()


def test_quantize_linears_replaces_every_projection_and_the_head_but_not_the_embedding():
    model = quantize_linears(Decoder(TINY, seed=1))
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert sum(isinstance(m, Int8WeightOnlyLinear) for m in model.modules()) == 7 * TINY.layers + 1
    assert isinstance(model.embed_tokens, nn.Embedding)


def test_int8_decode_without_the_scales_fails_the_check(monkeypatch):
    def unscaled(model):
        quantize_linears(model)
        for module in model.modules():
            if isinstance(module, Int8WeightOnlyLinear):
                module.scale.fill_(1 / 64)
        return model

    monkeypatch.setattr(int8_weight_only_decode, "quantize_linears", unscaled)
    assert "optimized" in fails_the_check(planted("int8_weight_only_decode"))


@pytest.mark.parametrize("lengths", [[5, 1, 9], [4], [7, 7, 2, 3]], ids=["ragged", "one", "with-ties"])
def test_padded_and_packed_prefill_give_each_prompt_alone(lengths):
    model = Decoder(TINY, seed=2, max_positions=64).requires_grad_(False)
    ids = torch.randint(0, TINY.vocab, (sum(lengths),), generator=torch.Generator().manual_seed(3))
    alone = torch.cat([model.hidden_states(row[None])[:, -1] for row in ids.split(lengths)])
    assert torch.allclose(padded_last_hidden(model, ids, lengths), alone, atol=1e-5)
    assert torch.allclose(packed_last_hidden(model, ids, lengths), alone, atol=1e-5)


def test_packed_prefill_attending_across_prompts_fails_the_check():
    def one_sequence(state):
        model, ids, lengths = state
        return model.logits(model.hidden_states(ids[None])[0, torch.tensor(lengths).cumsum(0) - 1]).float()

    arm = Stateful(setup=varlen_unpadded_prefill._state, run=one_sequence)
    assert "optimized" in fails_the_check(planted("varlen_unpadded_prefill", optimized=arm))


@pytest.mark.parametrize("rule", ["eos", "stop-string"])
def test_async_loop_stops_a_request_where_the_synchronous_one_does(monkeypatch, rule):
    inputs = async_step_scheduling.inputs((64, 2, 4, 5, 10), "fp32", 7, "cpu")
    free = async_step_scheduling.baseline_synchronous_scheduling(*inputs)
    token = int(free[1, 2])
    if rule == "eos":
        monkeypatch.setattr(async_step_scheduling, "EOS", token)
    else:
        piece = async_step_scheduling.vocabulary(TINY.vocab)[token]
        monkeypatch.setattr(async_step_scheduling, "STOP_STRINGS", (piece,))
    sync = async_step_scheduling.baseline_synchronous_scheduling(*inputs)
    ahead = async_step_scheduling.optimized_one_step_ahead(*inputs)
    assert torch.equal(sync, ahead)
    assert (sync[1, 3:] == async_step_scheduling.PAD).all() and not torch.equal(sync, free)
    verify(planted("async_step_scheduling"), "cpu", shapes=[(64, 2, 4, 5, 10)], seeds=[7])


def test_async_loop_that_processes_the_wrong_step_fails_the_check():
    def skips_one(state):
        tokens = async_step_scheduling.one_step_ahead_loop(state)
        return torch.cat((tokens[:, :1], tokens[:, 2:], tokens[:, :1]), dim=1)

    arm = Stateful(setup=async_step_scheduling.setup, run=skips_one, reset=async_step_scheduling.reset)
    assert "optimized diverges" in fails_the_check(planted("async_step_scheduling", optimized=arm))


@pytest.mark.parametrize("buckets", [[8, 16], [8]], ids=["every-step-fits", "eager-fallback"])
def test_piecewise_engine_serves_the_eager_engines_tokens(buckets):
    model = Decoder(TINY, seed=4, max_positions=128)
    trace = synthetic_trace(6, LogNormal(12, 0.8, 2, 40), LogNormal(4, 0.5, 1, 8), TINY.vocab, seed=5)

    def served(engine_type, **kwargs):
        pool = PagedPool(TINY, 64, block_size=4, max_seqs=8, max_len=64)
        engine = engine_type(model, pool, attention="gather", **kwargs)
        return serve(trace, model, pool, ChunkedPrefill(3, 16), engine=engine).tokens

    assert served(PiecewiseEngine, buckets=buckets) == served(Engine)


def test_piecewise_capture_sizes_double_up_to_the_budget():
    assert buckets_up_to(256) == [8, 16, 32, 64, 128, 256]
    assert buckets_up_to(12) == [8, 12] and buckets_up_to(8) == [8]


def test_piecewise_pieces_that_lose_the_positions_fail_the_check(monkeypatch):
    def rope_at_position_zero(self, index):
        if index == 0:
            self.positions.zero_()
        original(self, index)

    original = Bucket.piece
    monkeypatch.setattr(Bucket, "piece", rope_at_position_zero)
    assert "optimized diverges" in fails_the_check(planted("piecewise_cuda_graphs"))


def test_serve_refuses_an_engine_of_another_pool():
    model = Decoder(TINY, seed=1, max_positions=64)
    trace = synthetic_trace(2, 4, 2, TINY.vocab, seed=1)
    pools = [PagedPool(TINY, 16, block_size=4, max_seqs=2, max_len=16) for _ in range(2)]
    with pytest.raises(ValueError, match="served pool"):
        serve(trace, model, pools[0], ChunkedPrefill(2, 8), engine=Engine(model, pools[1], attention="gather"))


def test_transformers_llama_computes_the_shared_decoders_logits():
    pytest.importorskip("transformers")
    from kernels.ch16.static_kv_cache_compile import hf_model

    model = Decoder(TINY, seed=6, max_positions=64).requires_grad_(False)
    ids = torch.randint(0, TINY.vocab, (2, 11), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.allclose(hf_model(model, 64)(ids).logits, model(ids), atol=1e-5)


def test_the_static_cache_arm_runs_its_decode_steps_compiled():
    pytest.importorskip("transformers")
    from kernels.ch16 import static_kv_cache_compile as hf

    inputs = hf.inputs((64, 2, 2, 5, 4), "fp32", 3, "cpu")
    state = hf.static_state(*inputs)
    hf.generate(state)
    assert hasattr(state[0], "_compiled_call")


def test_generate_with_another_decoding_rule_fails_the_check():
    pytest.importorskip("transformers")
    from kernels.ch16 import static_kv_cache_compile as hf

    def penalized(*inputs):
        model, prompts, mask, config = hf.static_state(*inputs)
        config.repetition_penalty = 50.0
        return model, prompts, mask, config

    arm = Stateful(setup=penalized, run=hf.generate)
    assert "optimized diverges" in fails_the_check(planted("static_kv_cache_compile", optimized=arm))


def test_last_token_head_on_the_first_position_fails_the_check():
    from kernels.ch16 import last_token_logits_prefill as last

    def first_position(state):
        model, ids = state
        return model.logits(model.hidden_states(ids)[:, 0]).float()

    arm = Stateful(setup=last._state, run=first_position)
    assert "optimized" in fails_the_check(planted("last_token_logits_prefill", optimized=arm))
