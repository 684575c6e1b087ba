"""Typed parameter spaces and candidates: what a template can be rendered with.

A ``Param`` is a named axis with a finite tuple of choices, all ints or all strings (its type). A ``Space`` is the
product of its params in declaration order; ``validate`` turns a user's ``{"THREADS": "256"}`` into typed values
or says which name or value is wrong and what the choices are. A ``Candidate`` is one point of a family's space at
one target shape class (``{"hidden": 4096}``): the unit that is rendered, compiled, verified, timed and promoted.
Its name spells every parameter, so a search log, a registry record and ``--params`` all name it the same way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence


@dataclass(frozen=True)
class Param:
    """One axis of a space: a name, its choices in the order they are enumerated, and what it controls."""

    name: str
    choices: tuple[Any, ...]
    doc: str

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError(f"param {self.name} has no choices")
        kinds = {type(c) for c in self.choices}
        if kinds not in ({int}, {str}):
            raise ValueError(f"param {self.name}: choices must be all int or all str, got {sorted(map(str, kinds))}")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"param {self.name}: repeated choices {self.choices}")

    @property
    def kind(self) -> type:
        return type(self.choices[0])

    def parse(self, value: Any) -> Any:
        """``value`` (an int, a str, or the text of either) as one of the choices, else ValueError naming them."""
        if self.kind is int and isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"{self.name} takes an int, one of {list(self.choices)}; got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, self.kind) or value not in self.choices:
            raise ValueError(f"{self.name}={value!r} is not one of {list(self.choices)}")
        return value


@dataclass(frozen=True)
class Space:
    """The product of ``params``: enumerated in declaration order, first param slowest."""

    params: tuple[Param, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def size(self) -> int:
        size = 1
        for p in self.params:
            size *= len(p.choices)
        return size

    def points(self) -> Iterator[dict[str, Any]]:
        for values in itertools.product(*(p.choices for p in self.params)):
            yield dict(zip(self.names, values))

    def validate(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every param typed and checked against its choices; unknown or missing names raise ValueError."""
        unknown = sorted(set(given) - set(self.names))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; this space has {self.names}")
        missing = [n for n in self.names if n not in given]
        if missing:
            raise ValueError(f"missing parameter(s) {missing}; every one of {self.names} needs a value")
        return {p.name: p.parse(given[p.name]) for p in self.params}

    def parse_assignments(self, text: str) -> dict[str, Any]:
        """``"THREADS=256,VEC=8,..."`` (the CLI's ``--params``) as a validated dict."""
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        bad = [item for item in pairs if len(item) != 2]
        if bad:
            raise ValueError(f"--params takes NAME=VALUE pairs separated by commas; got {text!r}")
        return self.validate({k.strip(): v.strip() for k, v in pairs})


@dataclass(frozen=True)
class Candidate:
    """One point of a family's space at one target shape class; hashable, ordered like its name."""

    family: str
    params: tuple[tuple[str, Any], ...]
    target: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, family: str, params: Mapping[str, Any], target: Mapping[str, int],
           order: Sequence[str] | None = None) -> Candidate:
        names = list(order) if order is not None else sorted(params)
        return cls(family, tuple((n, params[n]) for n in names), tuple(sorted(target.items())))

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def target_values(self) -> dict[str, int]:
        return dict(self.target)

    @property
    def name(self) -> str:
        """``fused_add_rmsnorm-hidden4096-THREADS256-VEC8-...``: the family, the target, then every parameter."""
        target = "-".join(f"{k}{v}" for k, v in self.target)
        return "-".join([self.family, target, *(f"{k}{v}" for k, v in self.params)])

    def __lt__(self, other: Candidate) -> bool:
        return self.name < other.name
