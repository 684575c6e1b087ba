"""Cold start, regional compilation: ``torch.compile`` of a whole decoder vs of each of its layers, timed from the
first call to the first output in a fresh process with empty compile caches (``goal="cold_start"``).

- Baseline: ``torch.compile(model)``: Dynamo traces the embedding, all 16 layers, the norm and the head into one
  graph, and AOTAutograd and Inductor lower, schedule and generate code for 16 copies of the same layer.
- Optimized: the regional compilation recipe (docs.pytorch.org/tutorials/recipes/regional_compilation.html): each
  ``model.layers[i]`` compiled on its own. The layers share their code, so Dynamo compiles the first layer's graph
  and the other 15 reuse it behind guard checks (parameters are inputs, ``inline_inbuilt_nn_modules``); the
  embedding, the final norm and the head stay eager. Steady-state speed should be within a few percent of the full
  compile (the only fusions lost are across layer boundaries); the cold-start case cannot gate that (see the
  chapter's suite), so compile_decoder_block's numbers stand for it.

Each arm builds the model from the weights it is given, compiles it and runs one forward; the sample is that call's
wall time to a synchronized output (``pytest_aiperf.coldstart``), interpreter start, imports and input creation
excluded, with ``TORCHINDUCTOR_CACHE_DIR`` and ``TRITON_CACHE_DIR`` empty, so nothing an earlier sample compiled is
reused.

Shape ``(hidden, layers, batch, seq)``; the hidden size names the model (``kernels.ch14.config_for``). Timing shape
(2048, 16, 1, 512): Llama-3.2-1B, all 16 layers, one 512-token prompt, bf16; logits out.

Napkin math (time to first output on the GPU machine's 16-core host; compile work is CPU work, so H100 and H200 hosts
differ only in their CPUs):
- both: the lazy imports of Dynamo and Inductor on the first compile (~2-3 s; the sample starts after ``import
  torch`` and the model's weights exist), CUDA libraries' first use (cuBLAS handle, ~0.2-0.5 s), building the model
  (~0.1 s), Triton compiling the ~10-15 distinct kernels of a layer on Inductor's worker processes (~3-5 s; Inductor
  deduplicates identical kernel source, so the full graph compiles no more distinct kernels): ~6-8 s.
- full: Dynamo ~0.2-0.3 s per layer, AOTAutograd ~0.2 s per layer, Inductor's lowering, scheduling and code
  generation ~0.5-1 s per layer: 16 layers ~14-24 s more: ~20-32 s.
- regional: one layer's ~1-1.5 s of tracing and code generation, 15 guard checks: ~7-9.5 s.
- predicted ratio: 2-4x on both machines (wider where the host has fewer cores for Triton).

Not yet measured on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import compat, seeded, torch_dtype
from kernels.ch14 import config_for, decoder_params, load_decoder
from kernels.llm import Decoder
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """The prompt (batch, seq), then the model's parameters."""
    hidden, layers, batch, seq = shape
    cfg = config_for(hidden).with_layers(layers)
    tokens = torch.randint(0, cfg.vocab, (batch, seq), generator=seeded(seed)).to(device)
    return (tokens, *decoder_params(cfg, torch_dtype(dtype), seed, device))


def inference_model(tokens: torch.Tensor, params: tuple[torch.Tensor, ...]) -> Decoder:
    return load_decoder(params, tokens.shape[1]).requires_grad_(False)


def regionally_compiled(model: Decoder) -> Decoder:
    """``model`` with each decoder layer replaced by its compiled module (the rest eager)."""
    for index, layer in enumerate(model.layers):
        model.layers[index] = compat.compile(layer, dynamic=False)
    return model


@torch.no_grad()
def baseline_full_model_compile(tokens: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """Build, compile the whole model, run the prompt: logits (batch, seq, vocab)."""
    return compat.compile(inference_model(tokens, params), dynamic=False)(tokens)


@torch.no_grad()
def optimized_regional_compile(tokens: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """Build, compile each layer, run the prompt: logits (batch, seq, vocab)."""
    return regionally_compiled(inference_model(tokens, params))(tokens)


@torch.no_grad()
def reference(tokens: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """The eager model in the parameters' dtype (float64 in the checks)."""
    return inference_model(tokens, params)(tokens)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The forward alone (the compile is the lesson, not counted): weights read once, 2 flops per multiply-add."""
    hidden, layers, batch, seq = shape
    cfg = config_for(hidden).with_layers(layers)
    return Work(bytes=float(torch_dtype(dtype).itemsize * cfg.params), flops=float(2 * cfg.params * batch * seq),
                items=float(batch * seq), item_name="tokens")
