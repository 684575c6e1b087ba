"""Piecewise CUDA graphs: the serving engine's mixed prefill + decode steps launched kernel by kernel vs replayed as
one graph per stretch between attention calls, padded to a bucket of token counts (vLLM's piecewise CUDA graphs,
vllm-project/vllm#20451, which splits the model around attention).

- Baseline: ``kernels.serving.Engine``'s eager step: per layer ~50 kernels (norms with the fp32 upcast, q/k/v and
  output projections, rotate-half RoPE, the KV write, attention, the SwiGLU MLP, residual adds), each dispatched by
  the host at ~15-21 us (``kernels/ch12/cuda_graph_replay.py``, measured on the H100 VM). The steps are host-bound.
- Optimized: ``kernels.ch16.piecewise.PiecewiseEngine``: every stretch between two attention calls (an output
  projection and MLP, then the next layer's norm, projections and RoPE) is one graph per bucket of padded token
  counts (8, 16, ... up to the token budget), captured when the arm is set up (a server's startup); the KV write and
  attention, whose shapes and block tables change every step, run eagerly between the replays.
- Mechanism: ~34 of each layer's ~40-50 launches become part of one replay; the attention part keeps its ~6-17.

Both arms serve the same offline trace under ``ChunkedPrefill`` (every step carries the running decodes, then prefill
chunks, within the token budget: the mixed steps of a production server) on the same paged pool, with the same
prepare step, decode attention (the Triton paged kernel on a GPU, gather + SDPA elsewhere), LM head and sampling.
Off CUDA the pieces run eagerly on the same buffers and padding (the CPU checks what the graphs replay).

Shape ``(hidden, layers, requests, max_batch, token_budget)``: the serving preset of ``kernels/ch15/serving_arms.py``
(64: TINY; 2048: Llama-3.2-1B's layers with a 32000-token vocabulary) with ``layers`` layers. Timing shape
(2048, 4, 128, 32, 256): four Llama-3.2-1B layers (why four: ``serving_arms``), 128 requests at t=0 with lognormal
prompts (median 256, sigma 0.8, 16-1024 tokens) and outputs (median 64, sigma 0.5, 8-128), at most 32 running, steps
of at most 256 tokens, bf16.

Napkin math on an H100 SXM (3.0 TB/s measured copy), per step (~300-350 steps, 32-256 tokens each). Launch counts
were counted with a dispatch mode on the CPU (TINY, four layers; view ops excluded): the pieces hold 157 kernels
(~39 per layer, copies into their static buffers included), and the whole piecewise step runs 22 kernels more than
the eager one (those copies), so the eager step spends ~34 per layer on the same work. What stays eager per layer
is the two KV writes, the paged decode kernel (1-2 Triton launches) and its copy out, and the copy into the
attention buffer (~6), plus ~2 per prefill chunk starting at 0 and ~9 per chunk continuing after cached tokens
(page gather, mask, SDPA, copy).
- eager: ~4 x (34 + 6-17) + ~15 (prepare's copies, head, argmax) = ~175-220 launches at 15.5-21 us: ~2.7-4.6 ms,
  and prepare's host work ~0.2-0.5 ms; the GPU work (0.62 GB of weights, 0.16 TFLOP at 256 tokens)
  is ~0.5 ms and hides under the dispatch.
- piecewise: 5 replays (~10-15 us of host each), 4 x 6-17 eager launches and ~15 around them: ~40-85 launches =
  ~0.7-1.8 ms, plus prepare: ~0.9-2.3 ms, above the GPU's ~0.5-0.6 ms (the padded rows add < 10% at the mean
  bucket).
- predicted throughput: 1.8-3.5x (H100); H200 (4.25 TB/s) the same, both arms host-bound: 1.8-3.5x. Floor
  ``min_speedup`` 1.25 (70% of 1.8).

Checked: every request's tokens against the float64 single-request reference (``kernels/ch15/serving_arms.py``'s
``token_reference``, near-tie rule). Not yet measured on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import torch_dtype
from kernels.ch15.serving_arms import BLOCK, Deployment, config, padded, paged_pool, roomy, served_model
from kernels.ch16.piecewise import PiecewiseEngine, buckets_up_to
from kernels.llm import Decoder
from kernels.serving import ChunkedPrefill, Engine, LogNormal, Trace, serve, synthetic_trace
from pytest_aiperf import Stateful, Work
from pytest_aiperf.latency import Timeline

PROMPTS = {64: LogNormal(12, 0.8, 2, 40), 2048: LogNormal(256, 0.8, 16, 1024)}
OUTPUTS = {64: LogNormal(4, 0.5, 1, 8), 2048: LogNormal(64, 0.5, 8, 128)}


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """An offline trace of ``requests``, the seeded model, and a pool that holds ``max_batch`` of the longest
    sequences; steps carry at most ``token_budget`` tokens."""
    hidden, layers, requests, max_batch, token_budget = shape
    model = served_model(hidden, layers, dtype, seed, device)
    trace = synthetic_trace(requests, PROMPTS[hidden], OUTPUTS[hidden], model.config.vocab, seed)
    return trace, model, roomy(trace, max_batch, BLOCK[hidden], token_budget=token_budget)


def _attention(model: Decoder) -> str:
    return "paged" if model.device.type == "cuda" else "gather"


def _eager(trace: Trace, model: Decoder, deployment: Deployment) -> tuple[Any, ...]:
    pool = paged_pool(model, deployment)
    return trace, Engine(model, pool, _attention(model)), ChunkedPrefill(deployment.max_batch, deployment.token_budget)


def _piecewise(trace: Trace, model: Decoder, deployment: Deployment) -> tuple[Any, ...]:
    pool = paged_pool(model, deployment)
    engine = PiecewiseEngine(model, pool, buckets_up_to(deployment.token_budget), _attention(model))
    return trace, engine, ChunkedPrefill(deployment.max_batch, deployment.token_budget)


def replay(state: tuple[Any, ...]) -> tuple[torch.Tensor, Timeline]:
    """Serve the trace with the arm's engine: every request's tokens (padded) and their timeline."""
    trace, engine, scheduler = state
    out = serve(trace, engine.model, engine.pool, scheduler, engine=engine)
    return padded(out.tokens, trace), out.timeline


def reset(state: tuple[Any, ...]) -> None:
    """Every sequence freed, outside the timed region."""
    state[1].pool.reset()


baseline_eager_steps = Stateful(setup=_eager, run=replay, reset=reset)
optimized_piecewise_graphs = Stateful(setup=_piecewise, run=replay, reset=reset)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Every prompt and output token through the layers once (2 flops per multiply-add), at the lognormals'
    medians; the items are the output tokens."""
    hidden, layers, requests, max_batch, token_budget = shape
    cfg = config(hidden, layers)
    prompt, output = PROMPTS[hidden].median, OUTPUTS[hidden].median
    flops = 2 * requests * ((prompt + output) * layers * cfg.params_per_layer + output * hidden * cfg.vocab)
    weights = layers * cfg.params_per_layer + cfg.vocab * hidden
    steps = requests * output / max_batch
    return Work(bytes=float(torch_dtype(dtype).itemsize * weights * steps), flops=float(flops),
                items=float(requests * output), item_name="tokens")
