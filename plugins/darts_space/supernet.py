"""The DARTS search network: stem, cells, global pooling, linear classifier.

See docs/algorithms.md §DARTS cell search space.

Architecture parameters ``alphas_normal`` and ``alphas_reduce`` (edges × ops, initialised
1e-3·N(0,1)) are registered parameters kept apart from the weights by `arch_parameters`. The
stem and classifier stay real-valued; cell convolutions come from the injected binarizer.
It implements the ``"cells"`` and ``"mixing"`` calls of `Supernet`: row ``r`` of α is edge
``edge_index(nodes)[r]``, and ``with mixing(weights):`` replaces softmax(α) per cell type.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from automl_bin.interfaces import Binarizer, Genotype
from automl_bin.interfaces.cell_structure import CellStructure, CellType
from automl_bin.interfaces.supernet import Supernet
from automl_bin.nn.qconv import ConvFactory
from automl_bin_plugins.darts_space.cells import SearchCell
from automl_bin_plugins.darts_space.derive import derive_cell, edge_index, num_edges
from automl_bin_plugins.darts_space.opsets import get_op_set

__all__ = ["DartsSupernet", "reduction_layers"]

CELL_TYPES = ("normal", "reduce")


def reduction_layers(layers: int) -> set[int]:
    """Cells that halve the resolution: at depths L//3 and 2L//3 (docs/algorithms.md §Cell DAG)."""
    if layers < 3:
        return {layers // 2} if layers == 2 else set()
    return {layers // 3, 2 * layers // 3}


class DartsSupernet(Supernet):
    def __init__(self, *, input_shape: tuple[int, int, int], num_classes: int, layers: int,
                 init_channels: int, nodes: int, stem_multiplier: int, stem_stride: int = 1,
                 op_names: tuple[str, ...], binarizer: Binarizer, op_style: str = "real",
                 bin_act_on_depthwise: bool = False, space_name: str = "darts",
                 partial_k: int = 1, edge_norm: bool = False) -> None:
        super().__init__()
        self.op_names = tuple(op_names)
        self.nodes = nodes
        self.partial_k = partial_k
        self.edge_norm = edge_norm
        self.space_name = space_name
        opset = get_op_set(op_style, bin_act_on_depthwise)
        conv = ConvFactory(binarizer, binarize_inputs=opset.binarize_inputs)
        c_in = input_shape[0]
        c_curr = stem_multiplier * init_channels
        # the stem stays real-valued (docs/algorithms.md §Network skeleton and the 1-bit
        # convention)
        self.stem = nn.Sequential(nn.Conv2d(c_in, c_curr, 3, stride=stem_stride, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr))
        c_pp, c_p, c = c_curr, c_curr, init_channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        reductions = reduction_layers(layers)
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c *= 2
            if c % partial_k:
                raise ValueError(f"partial_k = {partial_k} must divide the channels of every "
                                 f"cell; cell {i} has {c}")
            cell = SearchCell(nodes, c_pp, c_p, c, reduction, reduction_prev, self.op_names, opset,
                              conv, partial_k=partial_k)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, nodes * c
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        e, m = num_edges(nodes), len(self.op_names)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(e, m))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(e, m))
        # PC-DARTS edge normalisation logits, one per edge, softmax over each node's inputs
        self.betas_normal = nn.Parameter(1e-3 * torch.randn(e)) if edge_norm else None
        self.betas_reduce = nn.Parameter(1e-3 * torch.randn(e)) if edge_norm else None
        self._fixed: dict[str, torch.Tensor] | None = None
        self._active: dict[str, list[bool]] | None = None
        #: the weights of the enclosing ``mixing()`` blocks by cell type; None outside them
        self._mixing: dict[str, torch.Tensor] | None = None

    # -- architecture -------------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        params = [self.alphas_normal, self.alphas_reduce]
        if self.edge_norm:
            params += [self.betas_normal, self.betas_reduce]
        return params

    def alphas(self) -> dict[str, nn.Parameter]:
        return {"normal": self.alphas_normal, "reduce": self.alphas_reduce}

    def cell_structure(self) -> CellStructure:
        return CellStructure(cell_types=[CellType(k, edge_index(self.nodes)) for k in CELL_TYPES],
                             op_names=self.op_names)

    def cell_arch_parameters(self) -> dict[str, list[nn.Parameter]]:
        out: dict[str, list[nn.Parameter]] = {k: [a] for k, a in self.alphas().items()}
        if self.edge_norm:
            out["normal"].append(self.betas_normal)
            out["reduce"].append(self.betas_reduce)
        return out

    def candidate_ops(self, cell_type: str, edge: int) -> list[tuple[nn.Module, ...]]:
        if cell_type not in CELL_TYPES:
            raise ValueError(f"no cell type {cell_type!r}; the cell types are {list(CELL_TYPES)}")
        if not 0 <= edge < num_edges(self.nodes):
            raise ValueError(f"edge {edge} is out of range: {cell_type} cells have "
                             f"{num_edges(self.nodes)} edges")
        return [tuple(cell.edges[edge].ops) for cell in self.cells
                if cell.reduction == (cell_type == "reduce")]

    @contextmanager
    def mixing(self, weights: Mapping[str, torch.Tensor]) -> Iterator[None]:
        if self._fixed is not None:
            raise RuntimeError("mixing() replaces softmax(α), but a fixed architecture is set; "
                               "call set_fixed_architecture(None) first")
        previous = self._mixing
        self._mixing = {**(previous or {}), **self.checked_mixing_weights(weights)}
        try:
            yield
        finally:
            self._mixing = previous

    def edge_weights(self) -> dict[str, torch.Tensor] | None:
        """Per cell type, softmax of the edge logits over each node's incoming edges."""
        if not self.edge_norm:
            return None
        out = {}
        for kind, betas in (("normal", self.betas_normal), ("reduce", self.betas_reduce)):
            parts, start = [], 0
            for j in range(self.nodes):
                parts.append(F.softmax(betas[start:start + 2 + j], dim=-1))
                start += 2 + j
            out[kind] = torch.cat(parts)
        return out

    def mixing_weights(self) -> dict[str, torch.Tensor]:
        """Per cell type, the (differentiable) weights each edge mixes its ops with."""
        return {k: F.softmax(a, dim=-1) for k, a in self.alphas().items()}

    def op_weights(self) -> dict[str, torch.Tensor]:
        return {k: w.detach() for k, w in self.mixing_weights().items()}

    def genotype(self) -> Genotype:
        weights = self.op_weights()
        edges = self.edge_weights()
        if edges is not None:  # PC-DARTS: edge weights enter the genotype rule
            weights = {k: w * edges[k].detach()[:, None] for k, w in weights.items()}
        cells = {k: derive_cell(weights[k].tolist(), self.op_names, self.nodes) for k in CELL_TYPES}
        return Genotype(space=self.space_name, cells=cells)

    def set_fixed_architecture(self, genotype: Genotype | None) -> None:
        if genotype is None:
            self._fixed, self._active = None, None
            return
        if self._mixing is not None:
            raise RuntimeError("set_fixed_architecture() inside a mixing() block: leave the "
                               "block first")
        index = {edge: r for r, edge in enumerate(edge_index(self.nodes))}
        fixed, active = {}, {}
        for kind in CELL_TYPES:
            w = torch.zeros(len(index), len(self.op_names))
            on = [False] * len(index)
            for edge in genotype.cell(kind).edges:
                r = index[(edge.source, edge.target)]
                w[r, self.op_names.index(edge.op)] = 1.0
                on[r] = True
            fixed[kind] = w.to(self.alphas_normal.device)
            active[kind] = on
        self._fixed, self._active = fixed, active

    # -- forward ------------------------------------------------------------------------------
    @property
    def feature_module(self) -> nn.Module:
        """The layer whose output is the penultimate (pooled) features, for feature losses."""
        return self.global_pooling

    def _weights_and_runs(self) -> tuple[dict[str, torch.Tensor], dict[str, list[list[bool]]]]:
        """Per cell type, the mixing weights and which ops run (those whose weight is not 0)."""
        mixing = self._mixing or {}
        if self._fixed is not None:
            weights = self._fixed
        else:
            weights = {**self.mixing_weights(), **mixing}
        runs = {}
        for kind, w in weights.items():
            if self._fixed is None and kind not in mixing:
                # softmax(α) is never exactly 0: every op runs, the weights stay on the device
                runs[kind] = [[True] * w.shape[1] for _ in range(w.shape[0])]
            else:  # one device sync per cell type
                runs[kind] = (w != 0).tolist()
        return weights, runs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, runs = self._weights_and_runs()
        edges = self.edge_weights() if self._fixed is None else None
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            active = self._active[kind] if self._active is not None else None
            s0, s1 = s1, cell(s0, s1, weights[kind], active,
                              None if edges is None else edges[kind], runs[kind])
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))
