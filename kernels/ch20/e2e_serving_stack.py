"""End-to-end serving stack: a Hugging Face-style server vs the chapter 15/18 engine, on one seeded trace.

- Baseline: what serving with ``generate`` on batches gives: static batches (``StaticBatching``: a batch runs until its
  longest request is done), a contiguous ``max_len`` KV reservation per batch slot (``ContiguousPool``), no prefix
  cache, each batch's prompts prefilled whole in one step, decode attention by gathering each sequence's cache and one
  SDPA call (``gathered_decode``).
- Optimized: the chapter 15 engine with every technique on: iteration-level scheduling with stall-free chunked prefill
  (``ChunkedPrefill``: continuous batching, decodes first, prompts in chunks within a token budget), paged KV
  (``PagedPool``), block-hash prefix reuse (``BlockHashCache``), and ch18's paged flash-decoding kernel
  (``paged_decode``, Triton, on a GPU; gather + SDPA on the CPU, where CI checks the kernel apart).
- Mechanism: more sequences per step (no padding steps, no KV reserved for tokens never generated), the shared system
  prompts prefilled once, prompts riding in decode steps, and decode attention reading only live pages.

Every part is a gated case of its own (ch15 ``continuous_batching``, ``paged_kv_cache``, ``prefix_cache_reuse``,
``chunked_prefill``; ch18 ``paged_decode_attention``); this module composes ch15's serving arms (``serving_arms``).
Ablations (``ServingStack``: each field one technique): the optimized stack without the prefix cache, without chunked
prefill (whole-prompt admission steps), and without the paged decode kernel. Paged KV and continuous batching cannot
be removed alone: the prefix cache lives on pages, and chunked prefill and the prefix cache are iteration-level
policies. Their joint share is what the three contributions leave of the full speedup.

Shape ``(hidden, layers, groups, per_group, prefix_len, kv_tokens)``; ``max_batch``, ``max_len``, the chunk budget and
the block size come with the width (``DEPLOY``). Timing shape (2048, 4, 8, 32, 512, 32768): four Llama-3.2-1B layers
with a 32000-token vocabulary (why: ``kernels/ch15/serving_arms.py``), bf16; 256 requests at t=0 (offline) in 8 groups
that share a 512-token system prompt, each with its own lognormal question (median 128, sigma 0.8, 16-1,024 tokens)
and lognormal output (median 24, sigma 1, 4-128 tokens); a KV budget of 32,768 tokens (256 MiB), sequences of at most
2,048 tokens, 64 running sequences at most, chunks of 2,048 tokens.

Gated metric ``e2e_p99``: every request arrives at t=0, so the 99th-percentile request finishes with almost the whole
trace served: the drain time, the inverse of throughput. The report adds TTFT and TPOT p50/p99 and output tokens/s of
both arms and every ablation.

Napkin math on an H100 SXM (3.0 TB/s measured copy ceiling; a step costs ~3.2-4.4 ms of host dispatch, the ch15
headers' count for four layers; a prefilled token ~1.4 us of GPU work: 0.49 GFLOP at ~600 TFLOP/s and ~1.8 MB of
activation traffic). Step counts come from replaying the timing trace (seed 1804140163: 178,232 prompt and 9,118
output tokens) through the engine's schedulers and pools without the model:
- baseline: 16 contiguous slots, so 16 static batches of 16, each run to its longest output: 1,885 steps, ~6.0-8.3 s,
  and its 16 batch prefills (~11 K tokens, ~16 ms of GPU work each) add ~0.2 s: ~6.2-8.5 s.
- optimized: 64 sequences at once, 125,440 prompt tokens taken from the prefix cache and 52,792 prefilled in chunks of
  at most 2,048 (~2.9 ms, under a step's host time): 236 steps, ~0.76-1.04 s, plus ~0.2-0.3 s for the attention calls
  of chunks that start after cached blocks (~11 launches per layer each): ~1.0-1.35 s.
- predicted: e2e p99 ~4.6-8.5x better. The parts, each removed from the full stack: the prefix cache ~1.0-1.3x (303
  steps, 179,506 tokens prefilled, a third of the chunks partly GPU-bound), chunked prefill ~1.2-1.5x (321 steps, five
  whole-prompt admissions of ~32 K tokens at ~46 ms each), the paged kernel ~1.0-1.05x (attention is a few percent of
  a host-bound step); continuous batching and paged KV together ~3.1-5.7x (399 steps with neither of the others, big
  prefills included). Their product, 3.7-11.7x, brackets the prediction; the ablation table checks whether the
  measured speedup equals what its parts multiply to.
- H200 (4.25 TB/s measured): the steps stay host-bound: ~4.6-8.5x as well.
- floor: ``min_speedup`` 3.2 (70% of 4.6x).

Not yet measured on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernels.ch15.serving_arms import BLOCK, ArmState, Deployment, arm, contiguous_pool, paged_pool, served_model
from kernels.llm import Decoder
from kernels.serving import BlockHashCache, ChunkedPrefill, ContinuousBatching, LogNormal, StaticBatching, Trace
from kernels.serving import shared_prefix_trace
from pytest_aiperf import Stateful

QUESTIONS = {64: LogNormal(4, 0.6, 1, 10), 2048: LogNormal(128, 0.8, 16, 1024)}
OUTPUTS = {64: LogNormal(4, 0.8, 1, 9), 2048: LogNormal(24, 1.0, 4, 128)}
DEPLOY = {64: (8, 40, 16), 2048: (64, 2048, 2048)}  # max_batch, max_len, chunk token budget


@dataclass(frozen=True)
class ServingStack:
    """Which techniques a server runs: ``continuous`` batching (iteration-level scheduling), ``paged`` KV, a
    ``prefix_cache`` (needs both), ``chunked`` prefill (needs continuous batching), the paged decode ``kernel``."""

    continuous: bool
    paged: bool
    prefix_cache: bool
    chunked: bool
    kernel: bool

    def __post_init__(self) -> None:
        if (self.prefix_cache and not (self.paged and self.continuous)) or (self.chunked and not self.continuous):
            raise ValueError(f"{self}: a prefix cache needs paged KV and continuous batching, chunked prefill needs "
                             f"continuous batching")


HF_STYLE = ServingStack(continuous=False, paged=False, prefix_cache=False, chunked=False, kernel=False)
FULL = ServingStack(continuous=True, paged=True, prefix_cache=True, chunked=True, kernel=True)


@dataclass(eq=False)
class StackState(ArmState):
    """A serving arm's state (``serving_arms.ArmState``) whose decode attention is the paged kernel only where its
    stack has it and the model is on a GPU."""

    kernel: bool = True

    @property
    def attention(self) -> str:
        return "paged" if self.kernel and self.model.device.type == "cuda" else "gather"


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """An offline trace of ``groups`` x ``per_group`` requests sharing one system prompt per group, the seeded model,
    and the deployment: ``kv_tokens`` of KV for sequences of at most ``max_len`` (``DEPLOY``)."""
    hidden, layers, groups, per_group, prefix_len, kv_tokens = shape
    max_batch, max_len, budget = DEPLOY[hidden]
    model = served_model(hidden, layers, dtype, seed, device)
    trace = shared_prefix_trace(groups, per_group, prefix_len, QUESTIONS[hidden], OUTPUTS[hidden], model.config.vocab,
                                seed)
    return trace, model, Deployment(max_batch, kv_tokens, max_len, BLOCK[hidden], budget)


def server(stack: ServingStack, trace: Trace, model: Decoder, deployment: Deployment) -> StackState:
    """The server ``stack`` names, over the deployment's KV budget."""
    pool = paged_pool(model, deployment) if stack.paged else contiguous_pool(model, deployment)
    if not stack.continuous:
        scheduler: Any = StaticBatching(deployment.max_batch)
    elif stack.chunked:
        scheduler = ChunkedPrefill(deployment.max_batch, deployment.token_budget)
    else:
        scheduler = ContinuousBatching(deployment.max_batch)
    prefix = BlockHashCache(pool) if stack.prefix_cache else None
    return StackState(trace, model, pool, scheduler, prefix, kernel=stack.kernel)


def stack_arm(stack: ServingStack) -> Stateful:
    """``serving_arms.arm`` over the server of ``stack``: the trace replayed, the pool and prefix cache reset."""
    return arm(lambda trace, model, deployment: server(stack, trace, model, deployment))


baseline_hf_style_server = stack_arm(HF_STYLE)
optimized_serving_stack = stack_arm(FULL)
ABLATIONS = {"no_prefix_cache": stack_arm(ServingStack(True, True, False, True, True)),
             "no_chunked_prefill": stack_arm(ServingStack(True, True, True, False, True)),
             "no_paged_decode_kernel": stack_arm(ServingStack(True, True, True, True, False))}
