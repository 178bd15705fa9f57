"""The DARTS genotype rule (docs/algorithms.md §Genotype rule), on per-edge op weights.

For each intermediate node: rank its incoming edges by their strongest non-``none`` op weight,
keep the top ``k`` (2), and on each kept edge keep the argmax non-``none`` op. PC-DARTS passes
weights already multiplied by its edge normalisation; pruning strategies pass one-hot weights
scaled by their indicator.
"""

from __future__ import annotations

from collections.abc import Sequence

from automl_bin.interfaces import Cell, Edge

__all__ = ["edge_index", "derive_cell", "num_edges"]


def num_edges(nodes: int) -> int:
    """Edges of a cell with ``nodes`` intermediate nodes and two inputs: 2+3+...+(nodes+1)."""
    return sum(2 + j for j in range(nodes))


def edge_index(nodes: int) -> list[tuple[int, int]]:
    """``(source, target)`` of each edge in supernet order; inputs are 0, 1, node j is 2+j."""
    return [(i, 2 + j) for j in range(nodes) for i in range(2 + j)]


def derive_cell(weights: Sequence[Sequence[float]], op_names: Sequence[str], nodes: int,
                keep: int = 2, none_op: str = "none") -> Cell:
    """Apply the DARTS rule to ``weights`` (``edges × ops``) and return the discrete cell."""
    if len(weights) != num_edges(nodes):
        raise ValueError(f"expected {num_edges(nodes)} edges for {nodes} nodes, got {len(weights)}")
    candidates = [m for m, name in enumerate(op_names) if name != none_op]
    edges = edge_index(nodes)
    kept: list[Edge] = []
    start = 0
    for j in range(nodes):
        n_in = 2 + j
        rows = range(start, start + n_in)
        # strength of an edge: its best non-none op; ties broken by the lower source index
        strength = {r: max(weights[r][m] for m in candidates) for r in rows}
        best_rows = sorted(rows, key=lambda r: (-strength[r], r))[: min(keep, n_in)]
        for r in sorted(best_rows):
            best_op = max(candidates, key=lambda m: (weights[r][m], -m))
            source, target = edges[r]
            kept.append(Edge(op_names[best_op], source, target))
        start += n_in
    return Cell(edges=kept, concat=list(range(2, 2 + nodes)))
