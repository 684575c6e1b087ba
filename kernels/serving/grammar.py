"""Structured output for the serving engine: a grammar as a character DFA, a synthetic byte-level vocabulary, and the
token-level index of the two, the tables a constrained decoder reads at every step.

Design reference: outlines' regex-guided generation (Willard and Louf, 2023: for every state of the regex's DFA and
every token of the vocabulary, whether the token's characters can be consumed from that state and where they lead)
and the packed token bitmasks of xgrammar and vLLM's structured output (one bit per token, 32 tokens per int32 word).
None of them is installed or copied.

The grammar is a sequence of pieces, each a ``Literal`` or a bounded ``Repeat`` of a character set, cycled: after
the last piece the first begins again (JSON Lines: one record after another). A repeat of variable length must be
followed by a literal starting outside its set, so that leaving the repeat is decided by one character and the
pieces give a DFA directly (no subset construction). ``JSON_RECORD`` is a JSON object with an integer, a string, a
decimal and a list of two strings (numbers without leading zeros); its DFA has 90 states, and every record it
accepts parses with ``json.loads``.

No tokenizer files are available offline, so ``synthetic_vocab`` draws one: tokens 0-255 are the single bytes (the
byte fallback of Llama's and GPT's vocabularies), the rest seeded ASCII strings of a BPE vocabulary's kinds (words
with and without a leading space, capitalized words, digit runs, JSON punctuation runs, other printable characters)
with a heavy-tailed length profile (1-12 characters, median 4). Every state allows at least the single-byte token of
each character it accepts.

``TokenFSM`` holds, for S states and V tokens: ``allowed`` (bool [S, V]), ``next_state`` (int32 [S, V], -1 where a
token is not allowed), ``packed`` (int32 [S, ceil(V / 32)], bit j of word w is token 32 w + j) and ``start``.

Cost model: building the index walks every token's characters from every state at once, one numpy gather per
character position: S x V x (longest token) lookups; drawing a 32000-token vocabulary and indexing it for 90 states
takes ~2-2.5 s on a 2-core CI machine, once, outside any timed region.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from kernels import seeded

DIGITS = "0123456789"
LOWER = "abcdefghijklmnopqrstuvwxyz"
PUNCTUATION = '{}[]":,. \n'


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Repeat:
    """``low`` to ``high`` characters of ``chars``."""

    chars: str
    low: int
    high: int


Piece = Literal | Repeat

JSON_RECORD: tuple[Piece, ...] = (
    Literal('{"id": '), Repeat(DIGITS[1:], 1, 1), Repeat(DIGITS, 0, 5), Literal(', "name": "'),
    Repeat(LOWER + " ", 1, 12), Literal('", "score": '), Repeat(DIGITS[1:], 1, 1), Repeat(DIGITS, 0, 2), Literal("."),
    Repeat(DIGITS, 1, 2), Literal(', "tags": ["'), Repeat(LOWER, 1, 8), Literal('", "'), Repeat(LOWER, 1, 8),
    Literal('"]}\n'))


@dataclass(frozen=True)
class CharDFA:
    """``table`` [states + 1, 256]: the next state for each byte; row and value ``dead`` (= states) absorb."""

    table: np.ndarray
    start: int

    @property
    def dead(self) -> int:
        return self.table.shape[0] - 1


def char_dfa(pieces: tuple[Piece, ...]) -> CharDFA:
    """The DFA of ``pieces`` repeated, over bytes, with only the states reachable from the first piece's start."""
    for piece, following in zip(pieces, pieces[1:] + pieces[:1]):
        if isinstance(piece, Repeat) and piece.low < piece.high and (
                isinstance(following, Repeat) or following.text[0] in piece.chars):
            raise ValueError(f"a repeat of {piece.chars!r} of variable length must be followed by a literal starting "
                             f"outside its set")

    def enter(index: int) -> tuple[int, int]:
        return index % len(pieces), 0

    def step(state: tuple[int, int], char: str) -> tuple[int, int] | None:
        index, done = state
        piece = pieces[index]
        if isinstance(piece, Literal):
            if char != piece.text[done]:
                return None
            return (index, done + 1) if done + 1 < len(piece.text) else enter(index + 1)
        if char in piece.chars and done < piece.high:
            return index, done + 1
        return step(enter(index + 1), char) if done >= piece.low else None

    start = enter(0)
    ids, edges, queue = {start: 0}, {}, deque([start])
    while queue:
        state = queue.popleft()
        for code in range(128):
            target = step(state, chr(code))
            if target is not None:
                if target not in ids:
                    ids[target] = len(ids)
                    queue.append(target)
                edges[ids[state], code] = ids[target]
    table = np.full((len(ids) + 1, 256), len(ids), dtype=np.int64)
    for (source, code), target in edges.items():
        table[source, code] = target
    return CharDFA(table, 0)


def synthetic_vocab(size: int, seed: int) -> list[bytes]:
    """``size`` distinct tokens: the 256 single bytes, then seeded ASCII strings (see the module docstring), drawn
    in batches of candidates (kind, length, characters), duplicates skipped."""
    if size <= 256:
        raise ValueError(f"a vocabulary of {size} tokens has no room beyond the 256 single bytes")
    gen = seeded(seed)
    other = "".join(chr(c) for c in range(33, 127) if chr(c) not in LOWER + DIGITS + PUNCTUATION)
    kinds = ((" " + LOWER, LOWER), (LOWER, LOWER), (LOWER.upper(), LOWER), (DIGITS, DIGITS),
             (PUNCTUATION, PUNCTUATION), (other + LOWER, other + DIGITS + LOWER))
    weights = torch.tensor([0.30, 0.20, 0.12, 0.10, 0.13, 0.15])
    tokens = [bytes([b]) for b in range(256)]
    seen = set(tokens)
    while len(tokens) < size:
        batch = 2 * (size - len(tokens)) + 64
        kind = torch.multinomial(weights, batch, replacement=True, generator=gen).tolist()
        length = (torch.randn(batch, generator=gen) * 0.55 + 1.1).exp().floor().add(1).clamp(max=12).long().tolist()
        picks = torch.randint(0, 1 << 30, (batch, 12), generator=gen).tolist()
        for k, n, p in zip(kind, length, picks):
            first, rest = kinds[k]
            token = (first[p[0] % len(first)] + "".join(rest[d % len(rest)] for d in p[1:n])).encode()
            if token not in seen and len(tokens) < size:
                seen.add(token)
                tokens.append(token)
    return tokens


def pack_bits(allowed: np.ndarray) -> np.ndarray:
    """bool [S, V] -> int32 [S, ceil(V / 32)]: bit j of word w is column 32 w + j."""
    states, vocab = allowed.shape
    padded = np.zeros((states, -(-vocab // 32) * 32), dtype=np.uint32)
    padded[:, :vocab] = allowed
    return (padded.reshape(states, -1, 32) << np.arange(32, dtype=np.uint32)).sum(-1, dtype=np.uint32).view(np.int32)


@dataclass(frozen=True)
class TokenFSM:
    """The token-level index of a grammar over a vocabulary (see the module docstring)."""

    allowed: np.ndarray
    next_state: np.ndarray
    packed: np.ndarray
    start: int

    @property
    def states(self) -> int:
        return self.allowed.shape[0]

    def walk(self, tokens: np.ndarray) -> np.ndarray:
        """The state before each token of ``tokens`` [rows, positions], each row from ``start``; -1 from the
        position after a token its state does not allow."""
        states = np.empty(tokens.shape, dtype=np.int64)
        current = np.full(tokens.shape[0], self.start, dtype=np.int64)
        for position in range(tokens.shape[1]):
            states[:, position] = current
            live = current >= 0
            current = np.where(live, self.next_state[np.maximum(current, 0), tokens[:, position]], -1)
        return states


def token_fsm(dfa: CharDFA, vocab: list[bytes]) -> TokenFSM:
    """Walk every token from every state of ``dfa``; raise if a state allows no token."""
    lengths = np.array([len(t) for t in vocab])
    chars = np.zeros((len(vocab), int(lengths.max())), dtype=np.int64)
    for index, token in enumerate(vocab):
        chars[index, :len(token)] = np.frombuffer(token, dtype=np.uint8)
    states = dfa.dead
    current = np.repeat(np.arange(states)[:, None], len(vocab), axis=1)
    for position in range(chars.shape[1]):
        live = position < lengths
        current[:, live] = dfa.table[current[:, live], chars[live, position]]
    allowed = current != dfa.dead
    if not allowed.any(axis=1).all():
        raise ValueError(f"states {np.flatnonzero(~allowed.any(axis=1)).tolist()} allow no token of the vocabulary")
    return TokenFSM(allowed, np.where(allowed, current, -1).astype(np.int32), pack_bits(allowed), dfa.start)
