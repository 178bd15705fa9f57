"""DARTS cells: the search cell (every edge a `MixedOp`) and the discrete cell of a genotype.

Inputs 0 and 1 are the outputs of the two previous cells, preprocessed to ``C`` channels
(``FactorizedReduce`` when the previous cell reduced the resolution). Intermediate node j sums
its incoming edges; the cell output concatenates the intermediate nodes (docs/algorithms.md
§Cell DAG).
"""

from __future__ import annotations

import torch
from torch import nn

from automl_bin.interfaces import Cell
from automl_bin.nn.mixed_op import MixedOp
from automl_bin.nn.partial import PartialChannelOp
from automl_bin.nn.qconv import ConvFactory
from automl_bin_plugins.darts_space.derive import edge_index
from automl_bin_plugins.darts_space.opsets import OpSet

__all__ = ["SearchCell", "DiscreteCell", "drop_path"]


def _preprocess(opset: OpSet, c_pp: int, c_p: int, c: int, reduction_prev: bool, affine: bool,
                conv: ConvFactory) -> tuple[nn.Module, nn.Module]:
    pre0 = (opset.reduce(c_pp, c, affine, conv) if reduction_prev
            else opset.preprocess(c_pp, c, affine, conv))
    return pre0, opset.preprocess(c_p, c, affine, conv)


def build_op(opset: OpSet, name: str, c: int, stride: int, affine: bool,
             conv: ConvFactory) -> nn.Module:
    op = opset.ops[name](c, stride, affine, conv)
    if "pool" in name and opset.style == "real":  # DARTS: pooling + BN in the search cells
        op = nn.Sequential(op, nn.BatchNorm2d(c, affine=False))
    return op


class SearchCell(nn.Module):
    """A cell whose every edge mixes all candidate ops with the given weights."""

    def __init__(self, nodes: int, c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool, op_names: tuple[str, ...], opset: OpSet,
                 conv: ConvFactory, partial_k: int = 1) -> None:
        super().__init__()
        self.reduction = reduction
        self.nodes = nodes
        self.preprocess0, self.preprocess1 = _preprocess(opset, c_pp, c_p, c, reduction_prev,
                                                         False, conv)
        self.edges = nn.ModuleList()
        for source, _target in edge_index(nodes):
            stride = 2 if reduction and source < 2 else 1
            mixed = MixedOp([build_op(opset, n, c // partial_k, stride, False, conv)
                             for n in op_names])
            self.edges.append(PartialChannelOp(mixed, partial_k, stride))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                active: list[bool] | None = None,
                edge_weights: torch.Tensor | None = None,
                runs: list[list[bool]] | None = None) -> torch.Tensor:
        # weights: (edges, ops); active[e] False skips edge e entirely (single-path mode);
        # edge_weights: (edges,) PC-DARTS edge normalisation, None = every edge weighs 1;
        # runs[e][m] False skips op m of edge e (its weight is 0), None = skip the zero weights
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for j in range(self.nodes):
            total: torch.Tensor | None = None
            for h in states:
                if active is None or active[e]:
                    y = self.edges[e](h, weights[e], None if runs is None else runs[e])
                    if edge_weights is not None:
                        y = edge_weights[e] * y
                    total = y if total is None else total + y
                e += 1
            if total is None:  # no active input edge: the node is zero
                total = torch.zeros_like(states[1]) if not self.reduction else \
                    states[1][:, :, ::2, ::2].mul(0.0)
            states.append(total)
        return torch.cat(states[2:], dim=1)


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of a path with probability ``drop_prob`` (DARTS retraining)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device).bernoulli_(keep)
    return x.div(keep) * mask


class DiscreteCell(nn.Module):
    """The cell of a genotype: only its kept edges and ops, with affine BN."""

    def __init__(self, cell: Cell, c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool, opset: OpSet, conv: ConvFactory) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = _preprocess(opset, c_pp, c_p, c, reduction_prev,
                                                         True, conv)
        # sorted by target: every edge into a node runs before that node is read
        edges = sorted(cell.edges, key=lambda e: e.target)
        self.edge_list = [(e.source, e.target) for e in edges]
        self.ops = nn.ModuleList()
        for edge in edges:
            stride = 2 if reduction and edge.source < 2 else 1
            self.ops.append(opset.ops[edge.op](c, stride, True, conv))
        self.concat = list(cell.concat)
        self.multiplier = len(self.concat)
        self.drop_prob = 0.0

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states: dict[int, torch.Tensor] = {0: self.preprocess0(s0), 1: self.preprocess1(s1)}
        for (source, target), op in zip(self.edge_list, self.ops):
            y = op(states[source])
            if self.training and not isinstance(op, nn.Identity):
                y = drop_path(y, self.drop_prob)
            states[target] = y if target not in states else states[target] + y
        return torch.cat([states[i] for i in self.concat], dim=1)
