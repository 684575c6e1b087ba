"""Prefix caches over a ``PagedPool``: find the longest run of full blocks whose keys and values some earlier request
already computed for the same leading tokens, so a new request prefills only the rest.

Design references: ``BlockHashCache`` is vLLM's automatic prefix caching: each full block is named by a hash of its
parent block's hash and its own tokens (so a hash names the whole prefix up to it), a dict maps hashes to blocks,
and a request walks its prompt's chain of hashes until one misses. ``RadixCache`` is SGLang's RadixAttention at
block granularity (its ``page_size > 1`` mode): a radix tree whose edges are runs of blocks, keyed by each run's
first block of tokens, split where two prompts diverge.

Both leave reference counting and eviction to the pool: a request that hits adopts the blocks (refcount + 1), so a
block in use is never reallocated; blocks nobody holds stay cached in the pool's free queue in release order (a
request releases its last block first) and are evicted, oldest first, only when the pool reallocates them, which
calls ``forget``. Because every holder of a block also holds the blocks before it, a block's ancestors are released
no earlier than it is: the pool evicts leaves first, the order SGLang's LRU of unlocked leaves follows. A hit covers
at most ``len(tokens) - 1`` tokens, so every request prefills at least one token and samples from its own logits;
only full blocks are cached, so a block is never written by two sequences (no copy-on-write).

Cost model, host only: a lookup hashes (block hash) or compares (radix) each full block of the prompt once, O(prompt
tokens); an insert likewise; ``forget`` is O(1) for the block hash and, for the radix tree, O(blocks of the node)
for the leaf blocks the pool evicts first.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Sequence

from kernels.serving.kv import PagedPool


class BlockHashCache:
    """vLLM-style prefix cache: chained block hashes -> blocks of ``pool``."""

    def __init__(self, pool: PagedPool) -> None:
        if pool.cache is not None:
            raise ValueError("the pool already has a prefix cache")
        pool.cache = self
        self.pool, self.block_size = pool, pool.block_size
        self.blocks: dict[bytes, int] = {}
        self.hashes: dict[int, bytes] = {}

    def _chain(self, tokens: Sequence[int], count: int):
        parent = b""
        for index in range(count):
            run = tokens[index * self.block_size:(index + 1) * self.block_size]
            parent = hashlib.blake2b(parent + struct.pack(f"<{len(run)}q", *run), digest_size=16).digest()
            yield parent

    def match(self, tokens: Sequence[int]) -> list[int]:
        """The cached blocks of ``tokens``' longest cached prefix of full blocks, short of the last token."""
        found = []
        for digest in self._chain(tokens, (len(tokens) - 1) // self.block_size):
            block = self.blocks.get(digest)
            if block is None:
                break
            found.append(block)
        return found

    def insert(self, tokens: Sequence[int], table: Sequence[int]) -> None:
        """Cache the full blocks of ``tokens``, whose keys and values are in ``table``'s blocks."""
        for digest, block in zip(self._chain(tokens, len(tokens) // self.block_size), table):
            if digest not in self.blocks and block not in self.hashes:
                self.blocks[digest], self.hashes[block] = block, digest

    def forget(self, block: int) -> None:
        digest = self.hashes.pop(block, None)
        if digest is not None:
            del self.blocks[digest]

    def clear(self) -> None:
        self.blocks.clear()
        self.hashes.clear()

    def __len__(self) -> int:
        return len(self.blocks)


class _Node:
    __slots__ = ("keys", "blocks", "children", "parent")

    def __init__(self, keys: list[tuple[int, ...]], blocks: list[int], parent: _Node | None) -> None:
        self.keys, self.blocks, self.parent = keys, blocks, parent
        self.children: dict[tuple[int, ...], _Node] = {}


class RadixCache:
    """SGLang-style prefix cache: a radix tree of block runs over ``pool``."""

    def __init__(self, pool: PagedPool) -> None:
        if pool.cache is not None:
            raise ValueError("the pool already has a prefix cache")
        pool.cache = self
        self.pool, self.block_size = pool, pool.block_size
        self.root = _Node([], [], None)
        self.where: dict[int, _Node] = {}

    def _keys(self, tokens: Sequence[int], count: int) -> list[tuple[int, ...]]:
        size = self.block_size
        return [tuple(tokens[i * size:(i + 1) * size]) for i in range(count)]

    def match(self, tokens: Sequence[int]) -> list[int]:
        """The cached blocks of ``tokens``' longest cached prefix of full blocks, short of the last token."""
        keys = self._keys(tokens, (len(tokens) - 1) // self.block_size)
        node, at, found = self.root, 0, []
        while at < len(keys):
            child = node.children.get(keys[at])
            if child is None:
                break
            run = 0
            while run < len(child.keys) and at < len(keys) and child.keys[run] == keys[at]:
                found.append(child.blocks[run])
                run, at = run + 1, at + 1
            if run < len(child.keys):
                break
            node = child
        return found

    def insert(self, tokens: Sequence[int], table: Sequence[int]) -> None:
        """Add the full blocks of ``tokens`` (keys and values in ``table``'s blocks) to the tree, splitting the edge
        where they leave it."""
        keys = self._keys(tokens, len(tokens) // self.block_size)
        node, at = self.root, 0
        while at < len(keys):
            child = node.children.get(keys[at])
            if child is None:
                fresh = [b for b in table[at:len(keys)] if b not in self.where]
                if len(fresh) == len(keys) - at:
                    leaf = _Node(keys[at:], list(fresh), node)
                    node.children[keys[at]] = leaf
                    self.where.update(dict.fromkeys(fresh, leaf))
                return
            run = 0
            while run < len(child.keys) and at < len(keys) and child.keys[run] == keys[at]:
                run, at = run + 1, at + 1
            if run < len(child.keys):
                if at == len(keys):
                    return
                child = self._split(child, run)
            node = child

    def _split(self, node: _Node, run: int) -> _Node:
        """Cut ``node``'s edge after ``run`` blocks; returns the new upper node."""
        upper = _Node(node.keys[:run], node.blocks[:run], node.parent)
        upper.parent.children[upper.keys[0]] = upper
        node.keys, node.blocks, node.parent = node.keys[run:], node.blocks[run:], upper
        upper.children[node.keys[0]] = node
        self.where.update(dict.fromkeys(upper.blocks, upper))
        return upper

    def forget(self, block: int) -> None:
        node = self.where.get(block)
        if node is None:
            return
        cut = node.blocks.index(block)
        first = node.keys[0]
        self._drop(node, cut)
        if cut == 0:
            del node.parent.children[first]

    def _drop(self, node: _Node, cut: int) -> None:
        """Uncache ``node``'s blocks from ``cut`` on and its whole subtree."""
        for block in node.blocks[cut:]:
            del self.where[block]
        del node.keys[cut:], node.blocks[cut:]
        for child in node.children.values():
            self._drop(child, 0)
        node.children.clear()

    def clear(self) -> None:
        self.root.children.clear()
        self.where.clear()

    def __len__(self) -> int:
        return len(self.where)
