"""`Genotype`: a discrete architecture as an immutable value with a lossless JSON round-trip.

A genotype is a set of named cells (for the DARTS space: ``normal`` and ``reduce``). Each cell
lists its edges ``(op, source, target)`` and the nodes concatenated into the cell output.
Architectures are data, never Python source to ``eval``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = ["Edge", "Cell", "Genotype"]


@attrs.frozen
class Edge:
    """One kept edge of a cell: operation ``op`` applied to node ``source``, summed into ``target``."""

    op: str
    source: int
    target: int


def _edges(value: Sequence[Edge | Sequence[Any]]) -> tuple[Edge, ...]:
    return tuple(e if isinstance(e, Edge) else Edge(str(e[0]), int(e[1]), int(e[2])) for e in value)


@attrs.frozen
class Cell:
    """A discrete cell: its edges and the nodes whose outputs form the cell output."""

    edges: tuple[Edge, ...] = attrs.field(converter=_edges)
    concat: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(i) for i in v))

    def ops(self) -> list[str]:
        """The operation names of the edges, in edge order."""
        return [e.op for e in self.edges]


def _cells(value: Mapping[str, Cell | Mapping[str, Any]]) -> tuple[tuple[str, Cell], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    out = []
    for name, cell in items:
        if not isinstance(cell, Cell):
            cell = Cell(edges=cell["edges"], concat=cell["concat"])
        out.append((str(name), cell))
    return tuple(out)


@attrs.frozen
class Genotype:
    """A discrete architecture of search space ``space``.

    ``cells`` maps cell type to `Cell`; it is stored as a tuple of pairs so the value is hashable.
    ``meta`` holds optional scalar facts (e.g. the epoch it was derived at); it takes part in
    equality, so keep it small and deterministic.
    """

    space: str
    cells: tuple[tuple[str, Cell], ...] = attrs.field(converter=_cells)
    meta: tuple[tuple[str, Any], ...] = attrs.field(
        factory=tuple, converter=lambda m: tuple(sorted(dict(m).items()))
    )

    def cell(self, name: str) -> Cell:
        """The cell of type ``name``; KeyError names the types that exist."""
        for key, cell in self.cells:
            if key == name:
                return cell
        raise KeyError(f"genotype has no cell {name!r}; it has {[k for k, _ in self.cells]}")

    @property
    def cell_names(self) -> list[str]:
        return [k for k, _ in self.cells]

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "cells": {
                name: {
                    "edges": [[e.op, e.source, e.target] for e in cell.edges],
                    "concat": list(cell.concat),
                }
                for name, cell in self.cells
            },
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genotype:
        try:
            return cls(space=data["space"], cells=data["cells"], meta=data.get("meta", {}))
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"not a genotype document: {exc!r}") from exc

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        return cls.from_dict(json.loads(text))

    def __str__(self) -> str:
        parts = []
        for name, cell in self.cells:
            edges = ", ".join(f"{e.op}({e.source}->{e.target})" for e in cell.edges)
            parts.append(f"{name}: [{edges}] concat={list(cell.concat)}")
        return f"Genotype<{self.space}> " + "; ".join(parts)
