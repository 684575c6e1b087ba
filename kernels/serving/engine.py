"""One model step of the serving engine: a packed batch of prefill chunks and decode tokens through the shared
``kernels.llm.Decoder``'s weights, against a KV pool, with greedy sampling.

Design references: vLLM's model runner (v1) and gpt-fast. A step's tokens from every sequence are packed into one
``[tokens, hidden]`` matrix with no padding, so every linear layer, norm and MLP runs once over all of them (vLLM's
flattened batch); each token carries its position (RoPE) and its flat KV slot (``slot_mapping``: block x
block_size + offset), where the layer writes its keys and values before attending. Attention is the only part that
sees sequences: one-token chunks (decodes) go together through the paged decode kernel (or the gather + SDPA
reference, ``attention="gather"``), longer chunks (prefills) each through SDPA, over their own keys when they start
at position 0 and over the pool's pages with a bottom-right causal mask when they start later. The LM head and the
argmax run on the last token of each chunk that samples (``logits_to_keep``): a chunk samples when it ends at the
last known token of its sequence.

The layers are the model's own modules (norms, projections, MLP, RoPE tables); only the attention call differs from
``Decoder.forward``, so a sequence served here gets the tokens ``greedy_generate`` gives it alone, up to float
rounding of the packed shapes.

Cost model, per step of T packed tokens over R sampling chunks: every weight is read once (the linear layers are
``2 x T x params_per_layer`` flops per layer), each token's KV written once per layer, decode attention reads each
decoding sequence's whole cache (``kernels.serving.attention``), and the LM head is ``2 x R x hidden x vocab`` flops.
Host side, ``prepare`` builds three int64 vectors of length T and the decode rows' block tables on the CPU and
copies them to the device (four small copies, plus one block table per prefill chunk that starts after position 0);
sampling returns R token ids, which the caller reads back with one sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from kernels.llm.model import Decoder
from kernels.serving.attention import gathered_decode, paged_decode, prefill_attention
from kernels.serving.kv import KVPool

ATTENTION = ("paged", "gather")


@dataclass(frozen=True)
class Chunk:
    """Tokens of sequence ``seq`` to run at positions start, start + 1, ...; ``sample`` when the step must return
    the next token after the chunk's last."""

    seq: int
    tokens: Sequence[int]
    start: int
    sample: bool


@dataclass
class StepInputs:
    """One step's device inputs: the packed ``tokens``, their ``positions`` and KV ``slots``; the first
    ``decodes`` tokens are one-token chunks whose block ``tables`` and ``lengths`` feed the decode kernel;
    ``prefills`` are (offset, length, start, block table or None) of the longer chunks; ``sample_index`` the packed
    row of each sampling chunk's last token, in the order of ``sampled`` (their sequence ids)."""

    tokens: torch.Tensor
    positions: torch.Tensor
    slots: torch.Tensor
    decodes: int
    tables: torch.Tensor | None
    lengths: torch.Tensor | None
    prefills: list[tuple[int, int, int, torch.Tensor | None]]
    sample_index: torch.Tensor
    sampled: list[int]
    chunks: list[Chunk]


class Engine:
    """``model``'s step against ``pool``; ``attention`` is "paged" (the Triton kernel) or "gather" (gather the
    pages, then SDPA) for decode tokens; ``splits`` fixes the decode kernel's KV splits (default: by occupancy)."""

    def __init__(self, model: Decoder, pool: KVPool, attention: str = "paged", splits: int | None = None) -> None:
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
        if pool.keys[0].dtype != model.dtype or pool.keys[0].device != model.device:
            raise ValueError(f"the pool holds {pool.keys[0].dtype} on {pool.keys[0].device}, the model runs "
                             f"{model.dtype} on {model.device}")
        self.model, self.pool, self.attention, self.splits = model, pool, attention, splits
        cfg = model.config
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.head_dim

    def prepare(self, chunks: Sequence[Chunk]) -> StepInputs:
        """Order the chunks (one-token chunks first), pack their tokens and look up their slots in the pool's block
        tables. Every chunk's tokens must already have room in the pool (``KVPool.ensure``)."""
        if not chunks:
            raise ValueError("a step needs at least one chunk")
        pool, size, device = self.pool, self.pool.block_size, self.model.device
        end = max(c.start + len(c.tokens) for c in chunks)
        if end > self.model.max_positions:
            raise ValueError(f"positions up to {end - 1} exceed the RoPE tables' {self.model.max_positions}")
        order = [c for c in chunks if len(c.tokens) == 1] + [c for c in chunks if len(c.tokens) > 1]
        decodes = sum(1 for c in order if len(c.tokens) == 1)
        tokens, positions, token_rows, offsets = [], [], [], []
        for chunk in order:
            offsets.append(len(tokens))
            tokens.extend(chunk.tokens)
            positions.extend(range(chunk.start, chunk.start + len(chunk.tokens)))
            token_rows.extend([pool.rows[chunk.seq]] * len(chunk.tokens))
        position = torch.tensor(positions)
        blocks = pool.table_rows[torch.tensor(token_rows), position // size].long()
        packed = torch.stack((torch.tensor(tokens), position, blocks * size + position % size)).to(device)
        tables = decode_lengths = None
        if decodes:
            decode_lengths = position[:decodes].to(torch.int32) + 1
            pages = -(-int(decode_lengths.max()) // size)
            tables = pool.table_rows[token_rows[:decodes], :pages].to(device)
            decode_lengths = decode_lengths.to(device)
        prefills = []
        for index in range(decodes, len(order)):
            chunk, offset = order[index], offsets[index]
            table = None
            if chunk.start:
                pages = -(-(chunk.start + len(chunk.tokens)) // size)
                table = pool.table_rows[pool.rows[chunk.seq], :pages].long().to(device)
            prefills.append((offset, len(chunk.tokens), chunk.start, table))
        sampling = [index for index, c in enumerate(order) if c.sample]
        sample_index = torch.tensor([offsets[index] + len(order[index].tokens) - 1 for index in sampling],
                                    dtype=torch.long, device=device)
        return StepInputs(packed[0], packed[1], packed[2], decodes, tables, decode_lengths, prefills, sample_index,
                          [order[index].seq for index in sampling], order)

    @torch.no_grad()
    def hidden(self, inputs: StepInputs) -> torch.Tensor:
        """Final-norm hidden states ``[sampling chunks, hidden]`` of the sampling chunks' last tokens, writing
        every token's keys and values into the pool on the way."""
        model, count = self.model, inputs.tokens.shape[0]
        x = model.embed_tokens(inputs.tokens)
        cos, sin = model.cos[inputs.positions].unsqueeze(1), model.sin[inputs.positions].unsqueeze(1)
        for index, layer in enumerate(model.layers):
            attn = layer.self_attn
            q, k, v = attn.packed_qkv(layer.input_layernorm(x), cos, sin)
            self.pool.write(index, inputs.slots, k, v)
            out = self._attend(index, q, k, v, inputs)
            x = x + attn.o_proj(out.reshape(count, self.heads * self.head_dim))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return model.norm(x[inputs.sample_index])

    def _attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                inputs: StepInputs) -> torch.Tensor:
        out = torch.empty_like(q)
        keys, values, decodes = self.pool.keys[layer], self.pool.values[layer], inputs.decodes
        if decodes:
            if self.attention == "paged":
                out[:decodes] = paged_decode(q[:decodes], keys, values, inputs.tables, inputs.lengths, self.splits)
            else:
                out[:decodes] = gathered_decode(q[:decodes], keys, values, inputs.tables, inputs.lengths)
        for offset, length, start, table in inputs.prefills:
            rows = slice(offset, offset + length)
            if table is None:
                out[rows] = prefill_attention(q[rows], k[rows], v[rows], 0)
            else:
                context = (start + length, self.kv_heads, self.head_dim)
                out[rows] = prefill_attention(q[rows], keys[table].reshape(-1, *context[1:])[:context[0]],
                                              values[table].reshape(-1, *context[1:])[:context[0]], start)
        return out

    @torch.no_grad()
    def logits(self, inputs: StepInputs) -> torch.Tensor:
        """The LM head over the sampling chunks' last tokens: ``[sampling chunks, vocab]``."""
        return self.model.logits(self.hidden(inputs))

    @torch.no_grad()
    def sample(self, inputs: StepInputs) -> torch.Tensor:
        """Greedy next tokens of the sampling chunks, on the device, in the order of ``inputs.sampled``."""
        return self.logits(inputs).argmax(-1)

    def step(self, chunks: Sequence[Chunk]) -> tuple[list[int], list[int]]:
        """The mixed-batch entry point: run ``chunks`` (prefill chunks and decode tokens together); the sampling
        chunks' sequence ids and their next tokens, read back to the host."""
        inputs = self.prepare(chunks)
        return inputs.sampled, self.sample(inputs).tolist()

    def prefill(self, chunks: Sequence[Chunk]) -> tuple[list[int], list[int]]:
        """``step`` for prefill chunks only: each starts at position 0 or is longer than one token."""
        if any(len(c.tokens) == 1 and c.start for c in chunks):
            raise ValueError("a one-token chunk after position 0 is a decode; use step for a mixed batch")
        return self.step(chunks)

    def decode(self, chunks: Sequence[Chunk]) -> tuple[list[int], list[int]]:
        """``step`` for one-token chunks only: the batched decode."""
        if any(len(c.tokens) != 1 for c in chunks):
            raise ValueError("decode takes one-token chunks; use step for a mixed batch")
        return self.step(chunks)
