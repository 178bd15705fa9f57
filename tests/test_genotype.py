"""Genotype value object and the DARTS derivation rule."""

from __future__ import annotations

import pytest

from automl_bin.interfaces import Cell, Edge, Genotype
from automl_bin_plugins.darts_space.derive import derive_cell, edge_index, num_edges


def _genotype() -> Genotype:
    return Genotype(
        space="darts",
        cells={
            "normal": Cell(edges=[Edge("sep_conv_3x3", 0, 2), Edge("skip_connect", 1, 2)],
                           concat=[2]),
            "reduce": {"edges": [["max_pool_3x3", 0, 2], ["dil_conv_5x5", 1, 2]], "concat": [2]},
        },
        meta={"epoch": 3},
    )


def test_json_round_trip_is_lossless():
    """to_json/from_json returns an equal, hashable value."""
    g = _genotype()
    back = Genotype.from_json(g.to_json())
    assert back == g
    assert hash(back) == hash(g)
    assert back.cell("reduce").edges[1] == Edge("dil_conv_5x5", 1, 2)


def test_from_dict_rejects_garbage():
    """A document that is not a genotype raises ValueError."""
    with pytest.raises(ValueError):
        Genotype.from_dict({"cells": {}})
    with pytest.raises(KeyError):
        _genotype().cell("nope")


def test_edge_index_counts():
    """4 nodes give the 14 DARTS edges, inputs first."""
    assert num_edges(4) == 14
    assert edge_index(2) == [(0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]


def test_derive_keeps_top2_edges_and_ignores_none():
    """Edge strength is the best non-none op; 'none' is never chosen even when largest."""
    ops = ("none", "a", "b")
    w = [
        [0.9, 0.05, 0.05],  # edge 0->2: none dominates but strength only 0.05
        [0.1, 0.6, 0.3],    # 1->2: a
        [0.0, 0.2, 0.8],    # 0->3: b, strength .8
        [0.5, 0.3, 0.2],    # 1->3: strength .3
        [0.0, 0.45, 0.55],  # 2->3: b, strength .55
    ]
    cell = derive_cell(w, ops, nodes=2)
    # ties between ops go to the earlier column
    assert cell.edges == (Edge("a", 0, 2), Edge("a", 1, 2), Edge("b", 0, 3), Edge("b", 2, 3))
    # node 2 has only two inputs, both kept; node 3 keeps 0->3 and 2->3
    assert [(e.source, e.target) for e in cell.edges] == [(0, 2), (1, 2), (0, 3), (2, 3)]
    assert cell.edges[2].op == "b" and cell.edges[3].op == "b"
    assert cell.concat == (2, 3)
