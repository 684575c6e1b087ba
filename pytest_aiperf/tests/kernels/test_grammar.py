"""Structured output (kernels/serving/grammar.py, kernels/ch15/guided_decoding_bitmask.py) on the CPU: the token-level
index agrees with walking each token's characters through the character DFA, every record it lets through parses as
JSON, the packed bitmasks hold exactly the allowed tokens and the Triton kernel (under TRITON_INTERPRET=1) masks
exactly the rest, the masked float64 reference keeps the allowed argmax, gap and rms, both guided arms give the same
tokens, and a guided arm that ignores one bit of its masks fails the token check."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from kernels.ch15 import guided_decoding_bitmask as guided
from kernels.serving.grammar import (JSON_RECORD, Literal, Repeat, char_dfa, pack_bits, synthetic_vocab,
                                     token_fsm)
from pytest_aiperf import Case, Stateful, checks
from pytest_aiperf.cases import CaseParam

SHAPES = [(64, 2, 512, 4, 6, 24), (64, 2, 600, 3, 5, 20)]


@pytest.fixture(scope="module")
def index():
    dfa, vocab = char_dfa(JSON_RECORD), synthetic_vocab(2000, 3)
    return dfa, vocab, token_fsm(dfa, vocab)


def record_pattern() -> str:
    pieces = [re.escape(p.text) if isinstance(p, Literal) else f"[{re.escape(p.chars)}]{{{p.low},{p.high}}}"
              for p in JSON_RECORD]
    return "".join(pieces)


def test_a_token_is_allowed_where_its_characters_walk_the_character_dfa(index):
    dfa, vocab, fsm = index
    assert fsm.states == dfa.dead == 90
    gen = np.random.default_rng(0)
    for state, token in zip(gen.integers(0, fsm.states, 3000), gen.integers(0, len(vocab), 3000)):
        current = state
        for byte in vocab[token]:
            current = dfa.table[current, byte]
        assert fsm.allowed[state, token] == (current != dfa.dead)
        assert fsm.next_state[state, token] == (current if current != dfa.dead else -1)
    assert fsm.allowed.any(axis=1).all() and fsm.allowed.sum() < fsm.allowed.size / 4


def test_every_record_the_token_fsm_lets_through_parses_as_json(index):
    _, vocab, fsm = index
    gen = np.random.default_rng(1)
    state, text = fsm.start, b""
    while text.count(b"\n") < 40:
        token = gen.choice(np.flatnonzero(fsm.allowed[state]))
        text += vocab[token]
        state = fsm.next_state[state, token]
    records = text.decode().split("\n")[:-1]
    for record in records:
        assert re.fullmatch(record_pattern(), record + "\n"), record
        parsed = json.loads(record)
        assert list(parsed) == ["id", "name", "score", "tags"] and len(parsed["tags"]) == 2


def test_a_repeat_followed_by_a_character_of_its_set_is_refused():
    with pytest.raises(ValueError, match="of variable length must be followed by a literal starting outside its set"):
        char_dfa((Literal("a"), Repeat("ab", 1, 3), Literal("b")))


def test_packed_bitmasks_hold_exactly_the_allowed_tokens_and_the_kernel_masks_the_rest(index):
    _, vocab, fsm = index
    words = fsm.packed.view(np.uint32)
    bits = (words[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
    assert np.array_equal(bits.reshape(fsm.states, -1)[:, :len(vocab)].astype(bool), fsm.allowed)
    assert np.array_equal(pack_bits(np.eye(33, dtype=bool))[32], np.array([0, 1], dtype=np.int32))
    states = torch.tensor([0, 7, 41, 89, 12])
    logits = torch.randn(5, len(vocab), generator=torch.Generator().manual_seed(2))
    expected = logits.masked_fill(~torch.from_numpy(fsm.allowed)[states], float("-inf"))
    assert torch.equal(guided.apply_token_bitmask(logits.clone(), torch.from_numpy(fsm.packed), states), expected)


def test_the_masked_reference_keeps_the_allowed_argmax_gap_and_the_row_rms():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(6, 300, dtype=torch.float64, generator=gen)
    allowed = torch.rand(6, 300, generator=gen) < torch.tensor([0.9, 0.5, 0.05, 0.01, 1 / 300, 0.0])[:, None]
    allowed[4] = False
    allowed[4, 17] = True
    masked = guided.constrained(logits, allowed)
    for row in range(5):
        kept = logits[row][allowed[row]].sort(descending=True).values
        top = masked[row].topk(2)
        assert bool(allowed[row, top.indices[0]]) and float(top.values[0]) == float(kept[0])
        if kept.numel() > 1:
            assert float(top.values[0] - top.values[1]) == float(kept[0] - kept[1])
    assert torch.allclose(masked[:2].pow(2).mean(-1), logits[:2].pow(2).mean(-1))
    assert torch.equal(masked[5], logits[5])


def ignoring_one_bit(token: int) -> Stateful:
    def setup(prompts, model, plan):
        state = guided._device_setup(prompts, model, plan)
        state.tables["packed"][:, token // 32] |= torch.tensor(1 << (token % 32), dtype=torch.int64).to(torch.int32)
        return state

    return Stateful(setup=setup, run=guided.optimized_device_bitmask.run)


def case(optimized):
    return Case(name="guided_decoding_bitmask", baseline=guided.baseline_host_mask_per_step, optimized=optimized,
                inputs=guided.inputs, goal="throughput", token_reference=guided.token_reference, check_shapes=SHAPES,
                time_shapes=SHAPES[:1], dtypes=["fp32"])


def test_both_guided_arms_give_the_same_tokens_and_pass_the_token_check():
    checks.verify(CaseParam(case(guided.optimized_device_bitmask), SHAPES[0], "fp32"), "cpu")
    inputs = guided.inputs(SHAPES[0], "fp32", 9, "cpu")
    assert torch.equal(guided.baseline_host_mask_per_step(*inputs), guided.optimized_device_bitmask(*inputs))


def test_a_guided_arm_that_ignores_one_mask_bit_fails_the_token_check():
    seeds = CaseParam(case(guided.optimized_device_bitmask), SHAPES[0], "fp32").seeds(1)
    prompts, model, plan = guided.inputs(SHAPES[0], "fp32", seeds[0], "cpu")
    with torch.no_grad():
        token = int(model(prompts)[0, -1].argmax())
    assert not plan.grammar.allowed[plan.grammar.start, token]
    param = CaseParam(case(ignoring_one_bit(token)), SHAPES[0], "fp32")
    with pytest.raises(checks.CorrectnessError, match="optimized diverges from the reference's greedy choice"):
        checks.verify(param, "cpu", shapes=SHAPES[:1], seeds=seeds)
