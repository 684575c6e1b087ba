"""Seeded random weights for ``kernels.llm`` decoders: the same values on every device for a given seed.

Every tensor is drawn in fp32 on the CPU from one generator (``kernels.seeded``), in a fixed order, then cast to the
model's dtype and copied to its device, as ``kernels.normal`` does for case inputs. The draw order puts the
embedding, the untied LM head and the final norm first and then the layers one by one, so a model with fewer layers
draws the same raw values for the layers it has.

The scheme is GPT-2's, which Hugging Face's ``initializer_range`` follows: projections and embeddings are
Normal(0, init_std), and the two projections that write into the residual stream (attention output and MLP down)
are further scaled by 1/sqrt(2 * layers), so the residual stream's variance grows by about one unit over the whole
stack instead of one per layer and activations stay O(1) through 32 layers. RMSNorm weights are 1 + Normal(0, 0.1)
rather than exactly 1, and q/k/v biases (Qwen2) Normal(0, 0.1), so a kernel that drops either is caught by a check.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from kernels import seeded
from kernels.llm.config import LlamaConfig

NORM_WEIGHT_STD = 0.1
BIAS_STD = 0.1


def parameter_draws(cfg: LlamaConfig) -> Iterator[tuple[str, tuple[int, ...], float, float]]:
    """(parameter name in ``Decoder``, shape, mean, std) in draw order."""
    residual_std = cfg.init_std / math.sqrt(2 * cfg.layers)
    yield "embed_tokens.weight", (cfg.vocab, cfg.hidden), 0.0, cfg.init_std
    if not cfg.tie_embeddings:
        yield "lm_head.weight", (cfg.vocab, cfg.hidden), 0.0, cfg.init_std
    yield "norm.weight", (cfg.hidden,), 1.0, NORM_WEIGHT_STD
    for layer in range(cfg.layers):
        prefix = f"layers.{layer}."
        yield prefix + "input_layernorm.weight", (cfg.hidden,), 1.0, NORM_WEIGHT_STD
        for name, width in (("q_proj", cfg.q_width), ("k_proj", cfg.kv_width), ("v_proj", cfg.kv_width)):
            yield f"{prefix}self_attn.{name}.weight", (width, cfg.hidden), 0.0, cfg.init_std
            if cfg.qkv_bias:
                yield f"{prefix}self_attn.{name}.bias", (width,), 0.0, BIAS_STD
        yield prefix + "self_attn.o_proj.weight", (cfg.hidden, cfg.q_width), 0.0, residual_std
        yield prefix + "post_attention_layernorm.weight", (cfg.hidden,), 1.0, NORM_WEIGHT_STD
        yield prefix + "mlp.gate_proj.weight", (cfg.intermediate, cfg.hidden), 0.0, cfg.init_std
        yield prefix + "mlp.up_proj.weight", (cfg.intermediate, cfg.hidden), 0.0, cfg.init_std
        yield prefix + "mlp.down_proj.weight", (cfg.hidden, cfg.intermediate), 0.0, residual_std


@torch.no_grad()
def initialize(model: torch.nn.Module, cfg: LlamaConfig, seed: int) -> None:
    """Overwrite every parameter of ``model`` (a ``Decoder`` of ``cfg``) with its seeded draw, one tensor at a time
    (at most one fp32 tensor on the CPU at once: the embedding, 1 GB for Llama-3's vocabulary)."""
    params = dict(model.named_parameters())
    gen = seeded(seed)
    drawn = set()
    for name, shape, mean, std in parameter_draws(cfg):
        params[name].copy_(torch.randn(shape, generator=gen, dtype=torch.float32).mul_(std).add_(mean))
        drawn.add(name)
    missing = sorted(set(params) - drawn)
    if missing:
        raise ValueError(f"no seeded draw for parameters {', '.join(missing)}")
