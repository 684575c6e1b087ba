"""kernels.llm on the CPU with TINY: the cached paths agree with one causal forward, GQA through SDPA agrees with
repeated KV heads, weights are seeded, presets count their published parameters, and greedy decoding agrees with
its float64 teacher-forced reference and is not degenerate."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from kernels.llm import (LLAMA_3_2_1B, LLAMA_3_8B, QWEN2_5_0_5B, TINY, Decoder, KVCache, greedy_generate,
                         teacher_forced_logits)
from kernels.llm.model import apply_rotary, rope_tables

TINY_TIED_BIASED = dataclasses.replace(TINY, tie_embeddings=True, qkv_bias=True)


def tokens(batch: int, seq: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, TINY.vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cfg", [TINY, TINY_TIED_BIASED], ids=["tiny", "tied_biased"])
@pytest.mark.parametrize("tensor_pos", [False, True], ids=["int_pos", "tensor_pos"])
def test_cached_prefill_chunk_and_decode_match_one_causal_forward(cfg, tensor_pos):
    model = Decoder(cfg, seed=1)
    sequence = tokens(3, 12)
    with torch.no_grad():
        full = model(sequence)
        cache = KVCache(cfg, 3, 16, torch.float32, "cpu")
        buffers = [t.data_ptr() for t in (*cache.keys, *cache.values)]

        def at(pos):
            return torch.tensor(pos) if tensor_pos else pos

        prefill = model.prefill(sequence[:, :5], cache, at(0))
        chunk = model(sequence[:, 5:9], cache, at(5))
        decoded = [model.decode(sequence[:, pos:pos + 1], cache, at(pos)) for pos in range(9, 12)]
    torch.testing.assert_close(prefill, full[:, 4], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunk, full[:, 5:9], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.stack(decoded, dim=1), full[:, 9:12], rtol=1e-5, atol=1e-5)
    assert [t.data_ptr() for t in (*cache.keys, *cache.values)] == buffers
    assert all(t[:, :, 12:].eq(0).all() and t[:, :, :12].ne(0).any() for t in cache.keys)


def test_positions_past_the_cache_or_the_rope_tables_are_refused():
    model = Decoder(TINY, seed=0, max_positions=8)
    with pytest.raises(ValueError, match="do not fit a cache of 4"):
        model.prefill(tokens(1, 5), KVCache(TINY, 1, 4, torch.float32, "cpu"))
    with pytest.raises(ValueError, match="exceed the RoPE tables' 8"):
        model(tokens(1, 9))
    with pytest.raises(ValueError, match="exceed the RoPE tables' 8"):
        model.decode(tokens(1, 1), KVCache(TINY, 1, 16, torch.float32, "cpu"), 8)


def test_gqa_attention_through_sdpa_equals_repeated_kv_heads():
    model = Decoder(TINY_TIED_BIASED, dtype=torch.float64, seed=2)
    attn, (batch, seq) = model.layers[0].self_attn, (2, 7)
    x = torch.randn(batch, seq, TINY.hidden, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    q = attn.q_proj(x).view(batch, seq, TINY.heads, TINY.head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(batch, seq, TINY.kv_heads, TINY.head_dim).transpose(1, 2)
    v = attn.v_proj(x).view(batch, seq, TINY.kv_heads, TINY.head_dim).transpose(1, 2)
    q, k = apply_rotary(q, k, model.cos[:seq], model.sin[:seq])
    k, v = (t.repeat_interleave(TINY.group_size, dim=1) for t in (k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(TINY.head_dim)
    scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
    expected = attn.o_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, TINY.q_width))
    with torch.no_grad():
        torch.testing.assert_close(attn(x, model.cos[:seq], model.sin[:seq]), expected, rtol=1e-12, atol=1e-12)


def test_weights_depend_on_the_seed_only():
    same = Decoder(TINY, seed=7).state_dict(), Decoder(TINY, seed=7).state_dict()
    other = Decoder(TINY, seed=8).state_dict()
    assert all(torch.equal(same[0][name], same[1][name]) for name in same[0])
    assert not any(torch.equal(same[0][name], other[name]) for name in same[0])
    shallow = Decoder(TINY.with_layers(1), seed=7).state_dict()
    assert torch.equal(shallow["layers.0.self_attn.q_proj.weight"], same[0]["layers.0.self_attn.q_proj.weight"])


def test_residual_stream_and_logits_stay_order_one_through_32_layers():
    model = Decoder(TINY.with_layers(32), seed=0)
    with torch.no_grad():
        x = model.embed_tokens(tokens(2, 16))
        for layer in model.layers:
            x = layer(x, model.cos[:16], model.sin[:16])
        logits = model.logits(model.norm(x))
    assert 0.3 < x.pow(2).mean().sqrt() < 3.0
    assert 0.3 < logits.std() < 3.0


def test_presets_count_their_published_parameters():
    assert LLAMA_3_2_1B.params == 1_235_814_400
    assert LLAMA_3_8B.params == 8_030_261_248
    assert LLAMA_3_8B.with_layers(1).params_per_layer == 218_112_000
    assert QWEN2_5_0_5B.params == 494_032_768
    assert LLAMA_3_2_1B.kv_bytes_per_token("bf16") == 32 * 1024
    assert LLAMA_3_8B.kv_bytes_per_token(torch.float16) == 128 * 1024
    assert LLAMA_3_2_1B.with_vocab(32000).embedding_params == 32000 * 2048
    for cfg in (LLAMA_3_2_1B.with_layers(1), LLAMA_3_8B.with_layers(1), QWEN2_5_0_5B.with_layers(1), TINY,
                TINY_TIED_BIASED):
        model = Decoder(cfg, device="meta", seed=None, max_positions=1)
        assert sum(p.numel() for p in model.parameters()) == cfg.params


def test_greedy_generation_equals_the_float64_teacher_forced_argmax_and_is_not_degenerate():
    model = Decoder(TINY, dtype=torch.float64, seed=0)
    prompt = tokens(8, 8, seed=1)
    generated = greedy_generate(model, prompt, 24)
    logits = teacher_forced_logits(model, prompt, generated)
    assert generated.shape == (8, 24) and logits.shape == (8, 24, TINY.vocab)
    assert torch.equal(generated, logits.argmax(-1))
    top2 = logits.topk(2, dim=-1).values
    gap = (top2[..., 0] - top2[..., 1]) / logits.std(-1)
    assert 0.05 < gap.median() < 1.0, "top-1/top-2 gap in logit standard deviations: one token dominates or all tie"
    assert (gap < 1e-9).float().mean() < 0.01
    assert min(len(set(row.tolist())) for row in generated) >= 8
    assert (generated[:, 1:] == generated[:, :-1]).float().mean() < 0.3


def test_a_float64_copy_of_a_bf16_model_has_exactly_its_weights():
    model = Decoder(TINY_TIED_BIASED, dtype=torch.bfloat16, seed=4)
    twin = model.as_dtype(torch.float64)
    weights, twin_weights = model.state_dict(), twin.state_dict()
    assert weights.keys() == twin_weights.keys()
    for name, value in weights.items():
        assert twin_weights[name].dtype == torch.float64
        assert torch.equal(twin_weights[name], value.double()), name
    assert twin.lm_head.weight is twin.embed_tokens.weight
    cos, sin = rope_tables(TINY, model.max_positions, torch.float64, "cpu")
    assert torch.equal(twin.cos, cos) and torch.equal(twin.sin, sin)
    with torch.no_grad():
        sequence = tokens(2, 6)
        torch.testing.assert_close(model(sequence).double(), twin(sequence), rtol=0.05, atol=0.05)


def test_rms_norm_computes_in_fp32_and_returns_the_input_dtype():
    norm = Decoder(TINY, dtype=torch.bfloat16, seed=0).norm
    x = torch.randn(3, TINY.hidden).to(torch.bfloat16)
    h = x.float()
    expected = norm.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + TINY.norm_eps)).to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(norm(x), expected)


@pytest.mark.parametrize("tensor_pos", [False, True], ids=["int_pos", "tensor_pos"])
def test_an_early_exit_runs_the_first_layers_then_the_final_norm_and_writes_only_their_cache(tensor_pos):
    model = Decoder(TINY.with_layers(3), seed=5)
    sequence = tokens(2, 9)
    with torch.no_grad():
        x = model.embed_tokens(sequence)
        for layer in model.layers[:2]:
            x = layer(x, model.cos[:9], model.sin[:9])
        expected = model.logits(model.norm(x))
        cache = KVCache(model.config, 2, 12, torch.float32, "cpu")
        model(sequence[:, :6], cache, depth=2)
        pos = torch.tensor(6) if tensor_pos else 6
        cached = model(sequence[:, 6:], cache, pos, depth=2)
    torch.testing.assert_close(model(sequence, depth=2), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached, expected[:, 6:], rtol=1e-5, atol=1e-5)
    assert cache.keys[1].ne(0).any() and cache.keys[2].eq(0).all() and cache.values[2].eq(0).all()
