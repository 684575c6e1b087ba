"""KV-cache pools for the serving engine: where each sequence's keys and values live, and what holding them costs.

Design references: ``ContiguousPool`` is the pre-vLLM design (FasterTransformer, Hugging Face's static cache per
batch slot): an admitted sequence reserves ``max_len`` tokens up front, whatever it will use. ``PagedPool`` is
vLLM's PagedAttention block manager (Kwon et al., SOSP 2023): fixed-size blocks taken from a free list on demand, a
block table per sequence, and reference counts so sequences share prefix blocks. Its free list is vLLM v1's free
block queue: blocks freed with no holder queue in release order and keep their contents, so a prefix cache
(``kernels.serving.prefix``) can hand them out again until the pool reallocates them (oldest first), at which point
it tells the cache to ``forget`` them.

Storage is the same in both: per layer, keys and values ``[num_blocks, block_size, kv_heads, head_dim]`` in the
model's dtype (flash-attn's paged layout), zero-filled so masked slots never hold NaN. A contiguous slot owns
``max_len / block_size`` consecutive blocks, so both pools feed the same attention code and differ only in how
blocks are handed out. Block tables also live in a persistent CPU int32 tensor (one row per held sequence, written
when a block is allocated), so a step copies rows instead of rebuilding Python lists.

Cost model: a step writes each new token's keys and values once per layer (``2 x kv_heads x head_dim`` elements,
``index_copy_`` by slot); allocation and release are O(1) per block on the host.

Accounting is exact: ``reserved_tokens`` counts the tokens of blocks some sequence holds (refcount > 0),
``used_tokens`` the tokens scheduled or written in those blocks (a shared block counts once); times
``bytes_per_token`` they are bytes, and their peaks are kept. Cached blocks nobody holds are free, in neither count.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Protocol, Sequence

import torch

from kernels.llm.config import LlamaConfig


class Forgetful(Protocol):
    """A prefix cache as the pool sees it: told when a cached block is reallocated, cleared when the pool resets."""

    def forget(self, block: int) -> None: ...

    def clear(self) -> None: ...


class KVPool:
    """Block storage, block tables and accounting shared by both pools; subclasses decide how blocks are handed out
    (``ensure``) and returned (``free``)."""

    def __init__(self, cfg: LlamaConfig, num_blocks: int, block_size: int, max_seqs: int, max_len: int,
                 dtype: torch.dtype, device: Any) -> None:
        if num_blocks < 1 or block_size < 1 or max_seqs < 1 or max_len < 1:
            raise ValueError("a pool needs at least one block, sequence slot and token")
        shape = (num_blocks, block_size, cfg.kv_heads, cfg.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.layers)]
        self.num_blocks, self.block_size, self.max_len = num_blocks, block_size, max_len
        self.bytes_per_token = cfg.kv_bytes_per_token(dtype)
        self.max_blocks = math.ceil(max_len / block_size)
        self.table_rows = torch.zeros(max_seqs, self.max_blocks, dtype=torch.int32)
        self.refs = [0] * num_blocks
        self.filled = [0] * num_blocks
        self.tables: dict[int, list[int]] = {}
        self.lengths: dict[int, int] = {}
        self.rows: dict[int, int] = {}
        self._free_rows = list(range(max_seqs - 1, -1, -1))
        self.reserved_tokens = self.used_tokens = 0
        self.peak_reserved_tokens = self.peak_used_tokens = 0

    @property
    def capacity_bytes(self) -> int:
        """Bytes of KV storage the pool allocated (all layers, keys and values)."""
        return self.num_blocks * self.block_size * self.bytes_per_token

    @property
    def blocks_in_use(self) -> int:
        """Blocks some sequence holds."""
        return sum(1 for count in self.refs if count)

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def table(self, seq: int) -> list[int]:
        return self.tables[seq]

    def ensure(self, seq: int, tokens: int) -> bool:
        """Make room for ``seq``'s first ``tokens`` tokens; False (nothing changed) when the pool cannot."""
        raise NotImplementedError

    def can_admit(self, lengths: Sequence[int]) -> bool:
        """Whether new sequences of these token counts would all fit now; ValueError for one past ``max_len``."""
        raise NotImplementedError

    def _check_lengths(self, lengths: Sequence[int]) -> None:
        if max(lengths, default=0) > self.max_len:
            raise ValueError(f"a sequence of {max(lengths)} tokens is past the pool's max_len {self.max_len}")

    def free(self, seq: int) -> None:
        """Return ``seq``'s blocks and its table row."""
        raise NotImplementedError

    def reset(self) -> None:
        """Back to the state ``__init__`` made, except the storage's contents: every sequence freed, the free lists
        in their first order, the peaks zero."""
        for seq in list(self.tables):
            self.free(seq)
        self._free_rows = list(range(self.table_rows.shape[0] - 1, -1, -1))
        self.peak_reserved_tokens = self.peak_used_tokens = 0

    def write(self, layer: int, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store new tokens' keys and values ``[tokens, kv_heads, head_dim]`` at flat slots (block x block_size +
        offset)."""
        self.keys[layer].view(-1, *keys.shape[1:]).index_copy_(0, slots, keys)
        self.values[layer].view(-1, *values.shape[1:]).index_copy_(0, slots, values)

    def _open(self, seq: int) -> bool:
        """Give ``seq`` a table and a table row if it has none; False when every row is taken."""
        if seq in self.tables:
            return True
        if not self._free_rows:
            return False
        self.tables[seq], self.lengths[seq], self.rows[seq] = [], 0, self._free_rows.pop()
        return True

    def _close(self, seq: int) -> None:
        del self.tables[seq], self.lengths[seq]
        self._free_rows.append(self.rows.pop(seq))

    def _append(self, seq: int, block: int) -> None:
        table = self.tables[seq]
        self.table_rows[self.rows[seq], len(table)] = block
        table.append(block)

    def _grow(self, seq: int, tokens: int) -> None:
        old = self.lengths[seq]
        if tokens <= old:
            return
        table, size = self.tables[seq], self.block_size
        for index in range(old // size, self.blocks_for(tokens)):
            self.filled[table[index]] = min(size, tokens - index * size)
        self.lengths[seq] = tokens
        self.used_tokens += tokens - old
        self.peak_used_tokens = max(self.peak_used_tokens, self.used_tokens)

    def _held(self, blocks: int) -> None:
        self.reserved_tokens += blocks * self.block_size
        self.peak_reserved_tokens = max(self.peak_reserved_tokens, self.reserved_tokens)


class ContiguousPool(KVPool):
    """``slots`` sequences at most, each reserving ``max_len`` tokens (consecutive blocks) when admitted."""

    def __init__(self, cfg: LlamaConfig, slots: int, max_len: int, *, block_size: int = 16,
                 dtype: torch.dtype = torch.float32, device: Any = "cpu") -> None:
        self.per_slot = math.ceil(max_len / block_size)
        super().__init__(cfg, slots * self.per_slot, block_size, slots, max_len, dtype, device)
        self._free_slots = list(range(slots - 1, -1, -1))

    @classmethod
    def for_budget(cls, cfg: LlamaConfig, budget_bytes: int, max_len: int, **kwargs: Any) -> ContiguousPool:
        """As many max_len slots as ``budget_bytes`` of KV holds."""
        dtype = kwargs.get("dtype", torch.float32)
        slots = budget_bytes // (max_len * cfg.kv_bytes_per_token(dtype))
        return cls(cfg, int(slots), max_len, **kwargs)

    def can_admit(self, lengths: Sequence[int]) -> bool:
        self._check_lengths(lengths)
        return len(lengths) <= len(self._free_slots)

    def reset(self) -> None:
        super().reset()
        self._free_slots = list(range(len(self._free_rows) - 1, -1, -1))

    def ensure(self, seq: int, tokens: int) -> bool:
        self._check_lengths([tokens])
        if seq not in self.tables:
            if not self._free_slots or not self._open(seq):
                return False
            first = self._free_slots.pop() * self.per_slot
            blocks = list(range(first, first + self.per_slot))
            self.tables[seq] = blocks
            self.table_rows[self.rows[seq], :self.per_slot] = torch.arange(first, first + self.per_slot)
            for block in blocks:
                self.refs[block] = 1
            self._held(self.per_slot)
        self._grow(seq, tokens)
        return True

    def free(self, seq: int) -> None:
        blocks = self.tables[seq]
        self._close(seq)
        for block in blocks:
            self.used_tokens -= self.filled[block]
            self.refs[block], self.filled[block] = 0, 0
        self._free_slots.append(blocks[0] // self.per_slot)
        self.reserved_tokens -= self.per_slot * self.block_size


class PagedPool(KVPool):
    """``num_blocks`` blocks of ``block_size`` tokens, allocated on demand; ``max_seqs`` sequences held at once,
    each at most ``max_len`` tokens long."""

    def __init__(self, cfg: LlamaConfig, num_blocks: int, *, block_size: int = 16, max_seqs: int = 256,
                 max_len: int = 8192, dtype: torch.dtype = torch.float32, device: Any = "cpu") -> None:
        super().__init__(cfg, num_blocks, block_size, max_seqs, max_len, dtype, device)
        self.free_blocks: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.cache: Forgetful | None = None

    @classmethod
    def for_budget(cls, cfg: LlamaConfig, budget_bytes: int, *, block_size: int = 16, **kwargs: Any) -> PagedPool:
        """As many blocks as ``budget_bytes`` of KV holds."""
        dtype = kwargs.get("dtype", torch.float32)
        blocks = budget_bytes // (block_size * cfg.kv_bytes_per_token(dtype))
        return cls(cfg, int(blocks), block_size=block_size, **kwargs)

    def can_admit(self, lengths: Sequence[int]) -> bool:
        self._check_lengths(lengths)
        return len(lengths) <= len(self._free_rows) and \
            sum(self.blocks_for(n) for n in lengths) <= len(self.free_blocks)

    def can_adopt(self, blocks: Sequence[int], tokens: int) -> bool:
        """Whether a new sequence of ``tokens`` tokens that adopts ``blocks`` (its cached prefix) would fit now."""
        self._check_lengths([tokens])
        taken_from_free = sum(1 for block in blocks if self.refs[block] == 0)
        return bool(self._free_rows) and \
            self.blocks_for(tokens) - len(blocks) <= len(self.free_blocks) - taken_from_free

    def reset(self) -> None:
        """``KVPool.reset``, and the prefix cache on this pool (if any) emptied."""
        super().reset()
        self.free_blocks = OrderedDict.fromkeys(range(self.num_blocks))
        if self.cache is not None:
            self.cache.clear()

    def ensure(self, seq: int, tokens: int) -> bool:
        table = self.tables.get(seq)
        if table is not None and tokens <= len(table) * self.block_size:
            self._grow(seq, tokens)
            return True
        self._check_lengths([tokens])
        need = self.blocks_for(tokens) - (len(table) if table else 0)
        if need > len(self.free_blocks) or not self._open(seq):
            return False
        for _ in range(need):
            block, _ = self.free_blocks.popitem(last=False)
            if self.cache is not None:
                self.cache.forget(block)
            self.refs[block], self.filled[block] = 1, 0
            self._append(seq, block)
        self._held(max(need, 0))
        self._grow(seq, tokens)
        return True

    def adopt(self, seq: int, blocks: list[int]) -> None:
        """Start ``seq`` (holding nothing yet) with ``blocks``, full blocks of someone's prefix, shared by reference."""
        if self.tables.get(seq):
            raise ValueError(f"sequence {seq} already holds blocks")
        if not self._open(seq):
            raise RuntimeError(f"the pool's block table has rows for {self.table_rows.shape[0]} sequences only")
        for block in blocks:
            if self.refs[block] == 0:
                del self.free_blocks[block]
                self._held(1)
                self.used_tokens += self.filled[block]
            self.refs[block] += 1
            self._append(seq, block)
        self.lengths[seq] = len(blocks) * self.block_size
        self.peak_used_tokens = max(self.peak_used_tokens, self.used_tokens)

    def free(self, seq: int) -> None:
        blocks = self.tables[seq]
        self._close(seq)
        for block in reversed(blocks):
            self.refs[block] -= 1
            if self.refs[block] == 0:
                self.free_blocks[block] = None
                self.reserved_tokens -= self.block_size
                self.used_tokens -= self.filled[block]
