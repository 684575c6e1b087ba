"""kernels.serving on the CPU with a float32 TINY model: every scheduler, pool and prefix cache returns, for every
request, exactly the tokens single-request ``greedy_generate`` gives it; no request is lost or duplicated and every
block goes back to the pool; preemption and eviction under a pool too small keep the tokens exact; the Triton paged
decode kernel (under TRITON_INTERPRET=1) equals SDPA over the gathered pages; chunked and prefix-suffix prefills give
a full prefill's logits; traces are deterministic per seed."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kernels.llm import TINY, Decoder, greedy_generate
from kernels.serving import (BlockHashCache, Chunk, ChunkedPrefill, ContiguousPool, ContinuousBatching, Engine,
                             LogNormal, PagedPool, RadixCache, StaticBatching, serve, shared_prefix_trace,
                             synthetic_trace)
from kernels.serving.attention import gathered_decode, paged_decode, prefill_attention
from pytest_aiperf.latency import metrics

BLOCK = 4


@pytest.fixture(scope="module")
def model():
    return Decoder(TINY, seed=1, max_positions=128)


@pytest.fixture(scope="module")
def trace():
    return synthetic_trace(12, LogNormal(8, 0.6, 2, 24), LogNormal(4, 0.8, 1, 9), TINY.vocab, seed=3)


@pytest.fixture(scope="module")
def prefix_trace():
    return shared_prefix_trace(2, 3, 13, LogNormal(4, 0.5, 1, 8), LogNormal(4, 0.5, 1, 6), TINY.vocab, seed=5)


def reference(model, trace):
    return [greedy_generate(model, torch.tensor([r.prompt]), r.output_len)[0].tolist() for r in trace.requests]


def paged(blocks):
    return PagedPool(TINY, blocks, block_size=BLOCK, max_seqs=16, max_len=64)


def assert_served(out, trace, pool, expected):
    """Exact tokens, each request's tokens recorded once each after its arrival, every block back in the pool."""
    assert out.tokens == expected
    assert [len(times) for times in out.timeline.token_s] == [r.output_len for r in trace.requests]
    for arrival, times in zip(out.timeline.arrival_s, out.timeline.token_s):
        assert arrival <= times[0] and times == sorted(times)
    stats = out.stats
    if not stats.preemptions:
        assert stats.decode_tokens == trace.output_tokens - len(trace) + stats.discarded_tokens
        assert stats.prefill_tokens + stats.prefix_hit_tokens == trace.prompt_tokens
    assert pool.blocks_in_use == 0 and pool.reserved_tokens == pool.used_tokens == 0
    assert not pool.tables and all(count == 0 for count in pool.refs)
    if isinstance(pool, PagedPool):
        assert sorted(pool.free_blocks) == list(range(pool.num_blocks))


SCHEDULES = {
    "static_contiguous": (lambda: ContiguousPool(TINY, 4, 64, block_size=BLOCK), lambda: StaticBatching(4)),
    "static_paged": (lambda: paged(40), lambda: StaticBatching(4)),
    "continuous_contiguous": (lambda: ContiguousPool(TINY, 4, 64, block_size=BLOCK), lambda: ContinuousBatching(4)),
    "continuous_paged": (lambda: paged(40), lambda: ContinuousBatching(4)),
    "chunked_paged": (lambda: paged(40), lambda: ChunkedPrefill(4, 8)),
    "continuous_paged_preempting": (lambda: paged(12), lambda: ContinuousBatching(8)),
    "chunked_paged_preempting": (lambda: paged(12), lambda: ChunkedPrefill(8, 6)),
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_every_scheduler_returns_single_request_greedy_tokens(model, trace, schedule):
    make_pool, make_scheduler = SCHEDULES[schedule]
    pool = make_pool()
    out = serve(trace, model, pool, make_scheduler(), attention="gather")
    assert_served(out, trace, pool, reference(model, trace))
    assert (out.stats.preemptions > 0) == schedule.endswith("preempting")
    assert (out.stats.discarded_tokens > 0) == schedule.startswith("static")


def test_static_batching_computes_finished_rows_until_the_longest(model, trace):
    out = serve(trace, model, paged(40), StaticBatching(4), attention="gather")
    batches = [trace.requests[i:i + 4] for i in range(0, len(trace), 4)]
    assert out.stats.discarded_tokens == sum(max(r.output_len for r in b) - r.output_len for b in batches for r in b)
    continuous = serve(trace, model, paged(40), ContinuousBatching(4), attention="gather")
    assert continuous.stats.decode_tokens == trace.output_tokens - len(trace) < out.stats.decode_tokens


def test_chunked_prefill_keeps_each_step_within_its_token_budget(model, trace):
    pool, seen = paged(40), []
    scheduler = ChunkedPrefill(4, 5)
    schedule = scheduler.schedule

    def recording(state):
        chunks = schedule(state)
        seen.append([(len(c.tokens), c.start) for c in chunks])
        return chunks

    scheduler.schedule = recording
    out = serve(trace, model, pool, scheduler, attention="gather")
    assert_served(out, trace, pool, reference(model, trace))
    assert all(sum(n for n, _ in step) <= 5 for step in seen)
    assert any(n > 1 and start > 0 for step in seen for n, start in step)


@pytest.mark.parametrize("cache", [BlockHashCache, RadixCache])
@pytest.mark.parametrize("blocks", [40, 9], ids=["roomy", "evicting"])
def test_prefix_caches_reuse_shared_prefixes_and_stay_exact_under_eviction(model, prefix_trace, cache, blocks):
    pool = paged(blocks)
    prefix = cache(pool)
    out = serve(prefix_trace, model, pool, ChunkedPrefill(4, 6), prefix=prefix, attention="gather")
    assert_served(out, prefix_trace, pool, reference(model, prefix_trace))
    assert out.stats.prefix_hit_tokens > 0 and 0 < out.stats.prefix_hit_rate < 1
    prefix.clear()
    assert len(prefix) == 0 and prefix.match(prefix_trace.requests[0].prompt) == []


@pytest.mark.parametrize("cache", [BlockHashCache, RadixCache])
def test_one_at_a_time_every_later_request_of_a_group_hits_its_whole_prefix(model, prefix_trace, cache):
    pool = paged(40)
    out = serve(prefix_trace, model, pool, ContinuousBatching(1), prefix=cache(pool), attention="gather")
    shared = 13 // BLOCK * BLOCK
    assert out.stats.prefix_hit_tokens == 2 * (3 - 1) * shared
    assert out.tokens == reference(model, prefix_trace)


@pytest.mark.parametrize("cache", [BlockHashCache, RadixCache])
def test_a_reset_pool_serves_the_next_run_as_a_fresh_one(model, prefix_trace, cache):
    pool = paged(12)
    prefix = cache(pool)
    first = serve(prefix_trace, model, pool, ChunkedPrefill(4, 6), prefix=prefix, attention="gather")
    assert len(prefix) > 0
    pool.reset()
    assert len(prefix) == 0 and list(pool.free_blocks) == list(range(12)) and pool.peak_reserved_tokens == 0
    second = serve(prefix_trace, model, pool, ChunkedPrefill(4, 6), prefix=prefix, attention="gather")
    assert second.tokens == first.tokens
    counts = ("steps", "prefill_tokens", "decode_tokens", "prefix_hit_tokens", "preemptions", "peak_reserved_bytes")
    assert [getattr(second.stats, name) for name in counts] == [getattr(first.stats, name) for name in counts]


def test_an_evicted_block_is_forgotten_before_it_is_reused():
    for cache in (BlockHashCache, RadixCache):
        pool = paged(4)
        prefix = cache(pool)
        prompt = list(range(9))
        assert pool.ensure(0, 9)
        prefix.insert(prompt, pool.table(0))
        pool.free(0)
        assert prefix.match(prompt) == [0, 1] and len(prefix) == 2 and list(pool.free_blocks) == [3, 2, 1, 0]
        assert pool.ensure(1, 12) and pool.table(1) == [3, 2, 1]
        assert prefix.match(prompt) == [0] and len(prefix) == 1


def test_radix_tree_splits_where_prompts_diverge_and_evicts_leaves_first():
    pool = paged(16)
    radix = RadixCache(pool)
    a, b = list(range(13)), list(range(8)) + [99] * 5
    pool.ensure(0, 13)
    radix.insert(a, pool.table(0))
    pool.adopt(1, radix.match(b))
    pool.ensure(1, 13)
    radix.insert(b, pool.table(1))
    (top,) = radix.root.children.values()
    assert len(top.blocks) == 2 and sorted(len(c.blocks) for c in top.children.values()) == [1, 1]
    assert radix.match(a + [0]) == pool.table(0)[:3] and radix.match(b + [0]) == pool.table(1)[:3]
    assert pool.table(0) == [0, 1, 2, 3] and pool.table(1) == [0, 1, 4, 5]
    pool.free(1)
    pool.free(0)
    assert list(pool.free_blocks)[-6:] == [5, 4, 3, 2, 1, 0]
    assert pool.ensure(2, 48) and radix.match(b + [0]) == [0, 1] and radix.match(a + [0]) == [0, 1, 2]
    assert pool.ensure(3, 12) and radix.match(a + [0]) == [0] and len(radix) == 1


def test_block_hashes_name_the_whole_prefix_not_one_block():
    pool = paged(8)
    cache = BlockHashCache(pool)
    pool.ensure(0, 8)
    cache.insert([1, 2, 3, 4, 5, 6, 7, 8], pool.table(0))
    assert cache.match([1, 2, 3, 4, 5, 6, 7, 8, 9]) == pool.table(0)
    assert cache.match([5, 6, 7, 8, 1, 2, 3, 4, 9]) == []
    assert cache.match([1, 2, 3, 4, 5, 6, 7, 8]) == pool.table(0)[:1]


def test_pools_account_reserved_and_used_bytes_exactly():
    contiguous = ContiguousPool(TINY, 2, 16, block_size=BLOCK)
    assert contiguous.ensure(0, 5) and contiguous.reserved_tokens == 16 and contiguous.used_tokens == 5
    assert contiguous.ensure(1, 16) and not contiguous.ensure(2, 1)
    contiguous.free(0)
    assert contiguous.reserved_tokens == 16 and contiguous.peak_reserved_tokens == 32
    assert contiguous.capacity_bytes == 32 * TINY.kv_bytes_per_token(torch.float32)
    pool = paged(6)
    assert pool.ensure(0, 5) and pool.reserved_tokens == 8 and pool.used_tokens == 5
    assert pool.ensure(0, 6) and pool.used_tokens == 6 and pool.blocks_in_use == 2
    assert not pool.ensure(1, 20) and 1 not in pool.tables
    pool.ensure(0, 8)
    pool.adopt(1, pool.table(0))
    assert pool.ensure(1, 10) and pool.reserved_tokens == 12 and pool.used_tokens == 10
    pool.free(0)
    assert pool.used_tokens == 10 and pool.reserved_tokens == 12
    pool.free(1)
    assert pool.used_tokens == pool.reserved_tokens == 0 and pool.peak_used_tokens == 10
    with pytest.raises(ValueError, match="max_len"):
        pool.ensure(2, 65)


def test_a_pool_too_small_for_one_request_fails_loudly(model, trace):
    with pytest.raises(RuntimeError, match="cannot hold request"):
        serve(trace, model, paged(3), ContinuousBatching(4), attention="gather")


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3)], ids=["fp32", "fp16"])
@pytest.mark.parametrize("heads,kv_heads,block,splits", [(4, 2, 4, 1), (8, 1, 8, 3), (2, 2, 16, 2)],
                         ids=["gqa2", "mqa8_split", "mha_split"])
def test_paged_decode_kernel_equals_sdpa_over_gathered_pages(dtype, tol, heads, kv_heads, block, splits):
    gen = torch.Generator().manual_seed(heads * 10 + block)
    lengths = torch.tensor([1, block, 3 * block + 1, 5 * block], dtype=torch.int32)
    pages = -(-int(lengths.max()) // block)
    keys, values = (torch.randn(24, block, kv_heads, 16, generator=gen).to(dtype) for _ in range(2))
    tables = torch.randperm(24, generator=gen)[:4 * pages].view(4, pages).to(torch.int32)
    q = torch.randn(4, heads, 16, generator=gen).to(dtype)
    expected = gathered_decode(q.double(), keys.double(), values.double(), tables, lengths)
    out = paged_decode(q, keys, values, tables, lengths, splits=splits)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)
    torch.testing.assert_close(gathered_decode(q, keys, values, tables, lengths).double(), expected, rtol=tol, atol=tol)


def test_prefill_attention_aligns_the_causal_diagonal_bottom_right():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(10, heads, 8, generator=gen, dtype=torch.float64) for heads in (4, 2, 2))
    full = F.scaled_dot_product_attention(*(t.transpose(0, 1) for t in (q, k, v)), is_causal=True,
                                          enable_gqa=True).transpose(0, 1)
    chunk = prefill_attention(q[6:], k, v, 6)
    torch.testing.assert_close(chunk, full[6:], rtol=1e-12, atol=1e-12)
    top_left = F.scaled_dot_product_attention(q[6:].transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                              is_causal=True, enable_gqa=True).transpose(0, 1)
    assert not torch.allclose(top_left, full[6:])
    with pytest.raises(ValueError, match="attends over"):
        prefill_attention(q[6:], k[:9], v[:9], 6)


@pytest.mark.parametrize("attention", ["gather", "paged"])
def test_chunked_and_prefix_suffix_prefills_give_the_full_prefill_logits(model, attention):
    prompt = torch.randint(0, TINY.vocab, (14,), generator=torch.Generator().manual_seed(2)).tolist()
    with torch.no_grad():
        expected = model(torch.tensor([prompt]))[0, -1]
    pool = paged(16)
    engine = Engine(model, pool, attention)
    pool.ensure(0, 14)
    whole = engine.logits(engine.prepare([Chunk(0, prompt, 0, True)]))[0]
    pool.ensure(1, 14)
    for start, end in ((0, 5), (5, 13)):
        engine.logits(engine.prepare([Chunk(1, prompt[start:end], start, False)]))
    last = engine.logits(engine.prepare([Chunk(1, prompt[13:], 13, True)]))[0]
    cache = BlockHashCache(pool)
    cache.insert(prompt, pool.table(0))
    hit = cache.match(prompt)
    pool.adopt(2, hit)
    pool.ensure(2, 14)
    suffix = engine.logits(engine.prepare([Chunk(2, prompt[len(hit) * BLOCK:], len(hit) * BLOCK, True)]))[0]
    assert len(hit) == 3
    for logits in (whole, last, suffix):
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_the_triton_engine_serves_exact_tokens(model):
    small = synthetic_trace(3, LogNormal(6, 0.5, 2, 12), 3, TINY.vocab, seed=7)
    pool = paged(16)
    out = serve(small, model, pool, ChunkedPrefill(3, 12), attention="paged", splits=2)
    assert_served(out, small, pool, reference(model, small))


def test_an_online_trace_replays_arrivals_on_the_wall_clock(model):
    online = synthetic_trace(6, 5, 3, TINY.vocab, seed=2, rate=400.0)
    arrivals = [r.arrival_s for r in online.requests]
    assert arrivals == sorted(arrivals) and arrivals[0] > 0
    pool = paged(40)
    out = serve(online, model, pool, ContinuousBatching(4), attention="gather")
    assert_served(out, online, pool, reference(model, online))
    start = out.timeline.arrival_s[0] - arrivals[0]
    assert out.timeline.arrival_s == pytest.approx([start + a for a in arrivals], abs=1e-9)
    assert metrics(out.timeline)["ttft_p50"] > 0
    stats = out.stats
    assert 0 < stats.scheduler_share < 1 and stats.step_s + stats.idle_s <= stats.wall_s
    assert stats.kv_capacity_bytes >= stats.peak_reserved_bytes >= stats.peak_used_bytes > 0


def test_traces_are_deterministic_per_seed():
    spec = LogNormal(16, 0.8, 4, 40)
    one, two = (synthetic_trace(50, spec, spec, 1000, seed=11, rate=5.0) for _ in range(2))
    other = synthetic_trace(50, spec, spec, 1000, seed=12, rate=5.0)
    assert one == two and one.digest() == two.digest() and one.digest() != other.digest()
    assert one.kind == "online" and synthetic_trace(3, 4, 2, 1000, seed=1).requests[2].arrival_s == 0.0
    lengths = [len(r.prompt) for r in one.requests]
    assert min(lengths) >= 4 and max(lengths) <= 40 and 8 < sorted(lengths)[25] < 32
    grouped = shared_prefix_trace(3, 4, 10, 5, 2, 1000, seed=4)
    assert grouped == shared_prefix_trace(3, 4, 10, 5, 2, 1000, seed=4)
    for group in range(3):
        prompts = [r.prompt for r in grouped.requests if r.group == group]
        assert len(prompts) == 4 and len({p[:10] for p in prompts}) == 1 and len({p[10:] for p in prompts}) == 4
    assert len({r.prompt[:10] for r in grouped.requests}) == 3
    assert [r.group for r in grouped.requests] != sorted(r.group for r in grouped.requests)
    assert math.isclose(sum(r.output_len for r in grouped.requests), grouped.output_tokens)
