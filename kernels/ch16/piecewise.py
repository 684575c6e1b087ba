"""Piecewise CUDA graphs for the serving engine's mixed steps (vLLM's piecewise ``cudagraph_mode``, vllm#20451):
everything between two attention calls is one graph per padded token count, attention runs eagerly in between.

A step of T packed tokens (decodes and prefill chunks together, ``kernels.serving.engine``) is padded to the smallest
captured bucket b >= T. Per bucket, static buffers hold the step's tokens and positions, the residual stream
``[b, hidden]``, q/k/v, the attention output and the final hidden states, and the pieces are:

- piece 0: embedding, RoPE tables gathered at the positions, layer 0's input norm, q/k/v projections and RoPE;
- piece i (1..L-1): layer i-1's output projection, residual add, post-attention norm, MLP and residual add, then
  layer i's input norm, projections and RoPE;
- piece L: the last layer's output projection and MLP, then the final norm.

Between pieces, on the step's T real rows only: the KV write into the pool and attention (the paged decode kernel
for decode tokens, SDPA per prefill chunk), whose shapes change every step, then a copy into the attention buffer.
Padded rows compute throwaway values (every piece is row-wise) and are never attended to or sampled. The LM head
and the argmax run eagerly on the sampling rows, as in ``Engine``. A step longer than the largest bucket runs the
eager ``Engine`` step.

Off CUDA the pieces run eagerly on the same buffers (``kernels.ch16.graphed``): the CPU checks the function that the
graphs replay. Graphs of one bucket share a memory pool (they always replay in capture order); each bucket has its
own.
"""

from __future__ import annotations

from typing import Sequence

import torch

from kernels.ch16.graphed import GraphedStep
from kernels.llm import Decoder
from kernels.llm.model import apply_rotary
from kernels.serving import Engine, KVPool
from kernels.serving.engine import StepInputs


def buckets_up_to(budget: int) -> list[int]:
    """Capture sizes 8, 16, 32, ... below ``budget``, then ``budget`` itself."""
    sizes, size = [], 8
    while size < budget:
        sizes.append(size)
        size *= 2
    return [*sizes, budget]


class Bucket:
    """The static buffers of one padded token count and the L + 1 pieces captured on them."""

    def __init__(self, model: Decoder, size: int) -> None:
        cfg, device, dtype = model.config, model.device, model.dtype
        self.model, self.size = model, size
        self.tokens = torch.zeros(size, dtype=torch.long, device=device)
        self.positions = torch.zeros(size, dtype=torch.long, device=device)
        self.x = torch.zeros(size, cfg.hidden, dtype=dtype, device=device)
        self.cos = torch.zeros(size, 1, cfg.head_dim, dtype=dtype, device=device)
        self.sin = torch.zeros_like(self.cos)
        self.q = torch.zeros(size, cfg.heads, cfg.head_dim, dtype=dtype, device=device)
        self.k = torch.zeros(size, cfg.kv_heads, cfg.head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.attn = torch.zeros(size, cfg.q_width, dtype=dtype, device=device)
        self.final = torch.zeros(size, cfg.hidden, dtype=dtype, device=device)
        pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None
        self.pieces = [GraphedStep(torch.no_grad()(self.piece), (index,), pool, cuda=device.type == "cuda")
                       for index in range(cfg.layers + 1)]

    def piece(self, index: int) -> None:
        """Layer index-1's post-attention half (from the attention buffer) and layer index's pre-attention half."""
        model = self.model
        if index == 0:
            self.x.copy_(model.embed_tokens(self.tokens))
            self.cos.copy_(model.cos[self.positions].unsqueeze(1))
            self.sin.copy_(model.sin[self.positions].unsqueeze(1))
        else:
            layer = model.layers[index - 1]
            self.x.add_(layer.self_attn.o_proj(self.attn))
            self.x.add_(layer.mlp(layer.post_attention_layernorm(self.x)))
        if index == len(model.layers):
            self.final.copy_(model.norm(self.x))
            return
        layer, cfg = model.layers[index], model.config
        attn = layer.self_attn
        h = layer.input_layernorm(self.x)
        q = attn.q_proj(h).view(self.size, cfg.heads, cfg.head_dim)
        k = attn.k_proj(h).view(self.size, cfg.kv_heads, cfg.head_dim)
        q, k = apply_rotary(q, k, self.cos, self.sin)
        self.q.copy_(q)
        self.k.copy_(k)
        self.v.copy_(attn.v_proj(h).view(self.size, cfg.kv_heads, cfg.head_dim))


class PiecewiseEngine(Engine):
    """``Engine`` whose ``hidden`` replays the pieces of the smallest bucket that holds the step, with the KV write
    and attention eager between them. Every bucket is captured when the engine is built (a server's startup)."""

    def __init__(self, model: Decoder, pool: KVPool, buckets: Sequence[int], attention: str = "paged",
                 splits: int | None = None) -> None:
        super().__init__(model, pool, attention, splits)
        self.buckets = {size: Bucket(model, size) for size in sorted(buckets)}

    @torch.no_grad()
    def hidden(self, inputs: StepInputs) -> torch.Tensor:
        count = inputs.tokens.shape[0]
        size = next((size for size in self.buckets if size >= count), None)
        if size is None:
            return super().hidden(inputs)
        bucket = self.buckets[size]
        bucket.tokens[:count].copy_(inputs.tokens)
        bucket.positions[:count].copy_(inputs.positions)
        bucket.pieces[0].step()
        for index in range(len(self.model.layers)):
            q, k, v = bucket.q[:count], bucket.k[:count], bucket.v[:count]
            self.pool.write(index, inputs.slots, k, v)
            bucket.attn[:count].copy_(self._attend(index, q, k, v, inputs).reshape(count, -1))
            bucket.pieces[index + 1].step()
        return bucket.final[inputs.sample_index]
