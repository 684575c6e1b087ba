"""A model step captured once as a CUDA graph and replayed, with the same function run eagerly where there is no
CUDA (the CPU checks): the step's pieces are the same code either way, so the CPU checks what the graph replays.

``GraphedStep(fn, args)`` captures ``fn(*args)`` when an argument is a CUDA tensor, or with ``cuda=True``
(``kernels.ch12.capture``: a warm-up call on a side stream, then the capture), reading ``args`` at their addresses on
every replay; ``step()`` replays it and returns the static outputs, which the next replay overwrites (clone what must
survive it). Otherwise ``step()`` calls ``fn(*args)``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from kernels.ch12.capture import capture


class GraphedStep:
    def __init__(self, fn: Callable[..., Any], args: Sequence[Any], pool: Any = None, cuda: bool | None = None) -> None:
        self.fn, self.args = fn, tuple(args)
        self.graph = self.out = None
        if cuda is None:
            cuda = any(isinstance(a, torch.Tensor) and a.is_cuda for a in self.args)
        if cuda:
            self.graph, self.out = capture(fn, self.args, pool)

    @property
    def graphed(self) -> bool:
        return self.graph is not None

    def step(self) -> Any:
        if self.graph is None:
            return self.fn(*self.args)
        self.graph.replay()
        return self.out
