"""Chapter 14, the compiler and Triton: what ``torch.compile`` fuses on a decoder block, CUDA graph trees under
``mode="reduce-overhead"``, the graph breaks that synchronize a training step, FlexAttention's generated score
modification, a hand-written Triton kernel kept inside a compiled graph by ``torch.library.triton_op``, and the cost
side: time to the first output with regional compilation and with saved compile artifacts.

Every compiled arm goes through ``kernels.compat.compile`` (Inductor on the GPU; CI sets AIPERF_COMPILE_BACKEND=eager,
which checks what Dynamo traces, not Inductor's generated code) and compiles with ``dynamic=False``, so each shape
gets its own static graph as a user's fixed-shape model would.

Shapes of the model-level cases start with the hidden size, which names the model (``config_for``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kernels.llm import LLAMA_3_2_1B, LLAMA_3_8B, QWEN2_5_0_5B, TINY, Decoder, LlamaConfig

# huggingface.co/HuggingFaceTB/SmolLM2-135M/blob/main/config.json: a Llama-architecture model of 134.5 M parameters
# (30 layers of 576, 9 query and 3 KV heads of 64, MLP 1536, vocabulary 49152, tied embeddings); its
# initializer_range 0.0417 is 1/sqrt(576), gain 1.
SMOLLM2_135M = LlamaConfig(hidden=576, layers=30, heads=9, kv_heads=3, head_dim=64, intermediate=1536, vocab=49152,
                           rope_theta=100000.0, norm_eps=1e-5, tie_embeddings=True, init_std=576**-0.5)

MODELS = {cfg.hidden: cfg for cfg in (TINY, SMOLLM2_135M, QWEN2_5_0_5B, LLAMA_3_2_1B, LLAMA_3_8B)}


def config_for(hidden: int) -> LlamaConfig:
    """The model a shape's leading hidden size names: 64 TINY (CPU checks), 576 SmolLM2-135M, 896 Qwen2.5-0.5B,
    2048 Llama-3.2-1B, 4096 Llama-3-8B."""
    try:
        return MODELS[hidden]
    except KeyError:
        raise ValueError(f"no model of hidden size {hidden}; known: {sorted(MODELS)}") from None


def unchanged(state: Any) -> None:
    """The ``reset`` of a stateful arm whose run changes none of its state (a module applied to fixed inputs)."""


def decoder_params(cfg: LlamaConfig, dtype: torch.dtype, seed: int, device: Any) -> list[torch.Tensor]:
    """The seeded parameters of a ``Decoder`` of ``cfg``, in ``Decoder.parameters()`` order (a tied head once)."""
    return [p.detach() for p in Decoder(cfg, dtype=dtype, device=device, seed=seed).parameters()]


def load_decoder(params: Sequence[torch.Tensor], max_positions: int) -> Decoder:
    """A ``Decoder`` holding copies of ``params`` (as ``decoder_params`` returns them): the model that the
    embedding's hidden size names, with as many layers as ``params`` hold, in their dtype and on their device."""
    embedding = params[0]
    cfg = config_for(embedding.shape[1])
    per_layer = 9 + (3 if cfg.qkv_bias else 0)
    around = 2 if cfg.tie_embeddings else 3
    cfg = cfg.with_layers((len(params) - around) // per_layer)
    model = Decoder(cfg, dtype=embedding.dtype, device=embedding.device, seed=None, max_positions=max_positions)
    with torch.no_grad():
        for mine, given in zip(model.parameters(), params, strict=True):
            mine.copy_(given)
    return model
