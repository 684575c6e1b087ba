"""Static KV cache + compiled decode in Hugging Face transformers' ``generate``: the default dynamic cache in eager
mode vs ``cache_implementation="static"``, whose fixed-shape decode step ``generate`` compiles (transformers 5.x's
documented recipe; gpt-fast's first step).

- Baseline: ``LlamaForCausalLM.generate(ids, do_sample=False, max_new_tokens=N)`` as shipped: ``DynamicCache`` (each
  step concatenates the new keys and values onto every layer's cache, new shapes every step) and the eager model:
  per decode step ~16 x ~40 kernels dispatched from Python, plus ``generate``'s own loop (logits processors,
  stopping criteria, ``prepare_inputs_for_generation``, the cache update).
- Optimized: the same call with ``cache_implementation="static"`` and a ``CompileConfig``: ``generate`` allocates a
  ``StaticCache`` of prompt + N positions, runs the prefill eagerly and every decode step through
  ``torch.compile(model.__call__, mode="reduce-overhead")`` (Inductor fuses the elementwise work and CUDA graph trees
  replay the step: one launch path per step). The backend comes from ``kernels.compat.compile_backend()`` (CI:
  "eager", which traces the same graph without Inductor or graphs), with ``fullgraph=True`` so a graph break fails
  instead of splitting the step; ``_compile_all_devices`` lets ``generate`` compile on the CPU too, so the CI checks
  the compiled path. transformers' default ``CompileConfig`` (used on CUDA when none is given) is the same Inductor
  reduce-overhead compile without ``fullgraph``.
- Mechanism: a decode step becomes one graph replay of fused kernels instead of hundreds of Python-dispatched
  launches, and the cache stops being re-allocated every step.

The model is built from a ``LlamaConfig`` of the serving preset's dimensions (``kernels/ch15/serving_arms.py``: 64
TINY; 2048 Llama-3.2-1B with a 32000-token vocabulary, the plan's "L1B-32k") and loaded with the seeded weights of
``kernels.llm.Decoder`` (the same parameter names under ``model.``); nothing is downloaded. ``eos_token_id`` is None,
so every request generates exactly N tokens in both arms. The tokens are checked against the float64
``kernels.llm.Decoder`` teacher-forced (near-tie rule): transformers' RoPE tables are computed in fp32, ours in
float64, which the near-tie band covers.

Shape ``(hidden, layers, batch, prompt_len, new_tokens)``. Timing shapes (2048, 16, 1, 128, 128) and
(2048, 16, 8, 128, 128): the whole Llama-3.2-1B-32k, prompts of 128 tokens, 128 new tokens, bf16 (an eager call
takes ~1.5-2 s, so a sample is one call and the case has a budget).

Napkin math on an H100 SXM (3.0 TB/s measured copy; eager dispatch 15.5-21 us per kernel, measured on the H100 VM
by ``kernels/ch12/cuda_graph_replay.py``):
- eager: ~16 x ~40 + ~30 = ~670 kernels per decode step at 15.5-21 us = ~10-14 ms, plus ``generate``'s loop and the
  dynamic cache's concatenations (~1 ms): ~11-15 ms per token, the GPU mostly idle (batch 1 and 8 alike).
- compiled + graphed: weights 1.95 GB + 0.13 GB head = 2.08 GB = ~0.7 ms, the static cache (256 positions x 32 KB
  per request: 8 MB at batch 1, 67 MB at batch 8), ~200 fused kernels in the replay (~0.3-0.5 ms), and
  ``generate``'s Python loop around the compiled call (~0.5-1.5 ms, not compiled): ~1.5-2.7 ms per token.
- prefill (eager in both, 128 tokens) is ~1% of the call.
- predicted speedup: H100 4-8x, H200 4.5-9x (the same host cost, a faster replay); floor ``min_speedup`` 2.8 (70% of
  4). gpt-fast reported 4.2x for compile + static cache on Llama-7B (A100).

The first call compiles (tens of seconds with Inductor), timed apart and reported, never a sample. Not yet measured
on a GPU.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch

from kernels import compat, seeded
from kernels.ch14 import unchanged
from kernels.ch15.serving_arms import served_model
from kernels.llm import Decoder, teacher_forced_logits
from pytest_aiperf import Stateful, Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """The prompts (batch, prompt_len), the number of new tokens (a 0-d CPU int64 tensor), and the seeded model
    whose weights the transformers model loads."""
    require_transformers()
    hidden, layers, batch, prompt_len, new_tokens = shape
    model = served_model(hidden, layers, dtype, seed, device)
    prompts = torch.randint(0, model.config.vocab, (batch, prompt_len), generator=seeded(seed)).to(device)
    return prompts, torch.tensor(new_tokens), model


def require_transformers() -> None:
    """Skip the case, saying why, where transformers is not installed (the project's ``test`` extra pins it)."""
    pytest.importorskip("transformers", reason="transformers is not installed: pip install -e '.[test]'")


@functools.lru_cache(maxsize=2)
def hf_model(model: Decoder, positions: int) -> Any:
    """A transformers ``LlamaForCausalLM`` of ``model``'s dimensions holding its weights (same dtype and device).
    Kept per model (as ``served_model`` keeps the model per seed): ``generate`` compiles its decode step once per
    model object, so the checks' repeated calls on one seed reuse the compiled step instead of recompiling it up to
    Dynamo's recompile limit; both arms share it (``generate`` changes no weight)."""
    import transformers

    cfg = model.config
    hf_config = transformers.LlamaConfig(
        vocab_size=cfg.vocab, hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim, max_position_embeddings=positions, rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=cfg.tie_embeddings, rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    hf_config._attn_implementation = "sdpa"
    with torch.device(model.device):
        hf = transformers.LlamaForCausalLM(hf_config).to(model.dtype)
    state = {(name if name.startswith("lm_head.") else "model." + name): tensor
             for name, tensor in model.state_dict().items()}
    hf.load_state_dict(state, strict=True)
    return hf.eval().requires_grad_(False)


def generation_config(new_tokens: int, static: bool) -> Any:
    """Greedy decoding of exactly ``new_tokens`` tokens; with ``static``, the static cache and a compiled decode step
    on the configured backend (Inductor's reduce-overhead mode, or the CI's backend without a mode)."""
    import transformers

    settings: dict[str, Any] = dict(max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
    if static:
        backend = compat.compile_backend()
        compile_config = transformers.CompileConfig(fullgraph=True, backend=backend,
                                                    mode="reduce-overhead" if backend == "inductor" else None)
        compile_config._compile_all_devices = True
        settings.update(cache_implementation="static", compile_config=compile_config)
    return transformers.GenerationConfig(**settings)


def _state(prompts: torch.Tensor, new_tokens: torch.Tensor, model: Decoder, static: bool) -> tuple[Any, ...]:
    hf = hf_model(model, prompts.shape[1] + int(new_tokens))
    return hf, prompts, torch.ones_like(prompts), generation_config(int(new_tokens), static)


def dynamic_state(prompts: torch.Tensor, new_tokens: torch.Tensor, model: Decoder) -> tuple[Any, ...]:
    return _state(prompts, new_tokens, model, static=False)


def static_state(prompts: torch.Tensor, new_tokens: torch.Tensor, model: Decoder) -> tuple[Any, ...]:
    return _state(prompts, new_tokens, model, static=True)


@torch.no_grad()
def generate(state: tuple[Any, ...]) -> torch.Tensor:
    """``model.generate`` with the arm's generation config: the new tokens (batch, new_tokens)."""
    hf, prompts, mask, config = state
    return hf.generate(prompts, attention_mask=mask, generation_config=config)[:, prompts.shape[1]:]


baseline_dynamic_cache_eager = Stateful(setup=dynamic_state, run=generate, reset=unchanged)
optimized_static_cache_compiled = Stateful(setup=static_state, run=generate, reset=unchanged)


@torch.no_grad()
def token_reference(prompts: torch.Tensor, new_tokens: torch.Tensor, model: Decoder,
                    tokens: torch.Tensor) -> torch.Tensor:
    """Float64 teacher-forced logits (batch, new_tokens, vocab) of the ``kernels.llm`` model at every generated
    position."""
    return teacher_forced_logits(model.as_dtype(torch.float64), prompts, tokens.to(prompts.device))


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Per new token, the weights once and the cache so far once; 2 flops per multiply-add. Items: new tokens."""
    from kernels.ch15.serving_arms import config

    hidden, layers, batch, prompt_len, new_tokens = shape
    cfg = config(hidden, layers)
    weights = layers * cfg.params_per_layer + cfg.vocab * hidden
    size = torch.tensor([], dtype=torch.bfloat16 if dtype == "bf16" else torch.float32).element_size()
    cache = cfg.kv_bytes_per_token(torch.bfloat16) * batch * (prompt_len + new_tokens / 2)
    flops = 2 * batch * new_tokens * weights
    return Work(bytes=float(new_tokens * (size * weights + cache)), flops=float(flops), items=float(batch * new_tokens),
                item_name="tokens")
