"""The cell structure a search space exposes: cell types, their edges and the candidate ops.

A cell-based space (capability ``"cells"``) describes its supernet's architecture parameters
with a `CellStructure`: for every cell type, the ``(source, target)`` of each α row in order;
the op names give the columns. ``α[cell_type]`` then has shape ``(len(edges), len(op_names))``
and row ``r`` mixes the candidate ops of edge ``edges[r]``. Strategies read it from
`SearchSpace.cell_structure` (before any supernet exists) or `Supernet.cell_structure`.

Capabilities are plain strings a space lists in ``SearchSpace.capabilities``, so strategies
check what a space can do instead of matching its name or its configuration keys (options
of `SearchSpace.build_supernet`, such as PC-DARTS' ``partial_k``, are declared apart, in
``SearchSpace.supernet_options``).
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

__all__ = ["CELLS", "MIXING", "CellStructure", "CellType"]

#: the space implements `SearchSpace.cell_structure`, and its supernets `cell_structure`,
#: `alphas`, `cell_arch_parameters` and `candidate_ops`
CELLS = "cells"
#: its supernets implement ``with supernet.mixing(weights):`` (per-edge mixing weights in place
#: of softmax(α), a single op per edge when the weights are one-hot)
MIXING = "mixing"


def _edges(value: object) -> tuple[tuple[int, int], ...]:
    return tuple((int(s), int(t)) for s, t in value)  # type: ignore[attr-defined]


@attrs.frozen
class CellType:
    """One cell type: its name and the ``(source, target)`` of each α row, in row order.

    Nodes 0 and 1 are the cell's inputs; every later node is the sum of its incoming edges.
    """

    name: str
    edges: tuple[tuple[int, int], ...] = attrs.field(converter=_edges)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    def incoming(self, target: int) -> list[int]:
        """The α rows of the edges into node ``target``, in row order."""
        return [r for r, (_, t) in enumerate(self.edges) if t == target]


@attrs.frozen
class CellStructure:
    """Every cell type of a space and the op names of the α columns (shared by all types)."""

    cell_types: tuple[CellType, ...] = attrs.field(converter=tuple)
    op_names: tuple[str, ...] = attrs.field(converter=tuple)

    @property
    def names(self) -> list[str]:
        """The cell type names, in the order of `cell_types`."""
        return [c.name for c in self.cell_types]

    def cell(self, name: str) -> CellType:
        for c in self.cell_types:
            if c.name == name:
                return c
        raise KeyError(f"no cell type {name!r}; the cell types are {self.names}")

    def edges(self) -> dict[str, list[tuple[int, int]]]:
        """Per cell type, ``(source, target)`` of each α row."""
        return {c.name: list(c.edges) for c in self.cell_types}

    def shape(self, name: str) -> tuple[int, int]:
        """``(edges, ops)``: the shape of ``α[name]`` and of its mixing weights."""
        return (self.cell(name).num_edges, len(self.op_names))

    def __iter__(self) -> Iterator[CellType]:
        return iter(self.cell_types)
