"""`Supernet`: the weight-sharing network a search space builds (imports torch).

Architecture parameters (α, and e.g. PC-DARTS edge weights) are registered parameters, but they
are kept apart from the weights: `arch_parameters` and `weight_parameters` partition
``parameters()``. Strategies steer the supernet through this interface only.

Cell-based supernets (their space lists the capability ``"cells"``) also expose the structure of
α (`cell_structure`, `alphas`, `cell_arch_parameters`) and the modules of each edge
(`candidate_ops`); with the capability ``"mixing"``, ``with supernet.mixing(weights):`` runs
forward passes with per-edge mixing weights in place of softmax(α), e.g. one-hot
straight-through samples: then only the selected op of each edge runs, and α still gets its
gradient through the weights (see `automl_bin.nn.mixed_op`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import NoReturn

import torch
from torch import nn

from automl_bin.interfaces.cell_structure import CELLS, MIXING, CellStructure
from automl_bin.interfaces.genotype import Genotype

__all__ = ["Supernet"]


class Supernet(nn.Module):
    """Base class of supernets. Subclasses implement the abstract methods below."""

    @abstractmethod
    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters, in a fixed order (the order of `arch_state_dict`)."""

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not an architecture parameter."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    @abstractmethod
    def genotype(self) -> Genotype:
        """Derive the discrete architecture the current architecture parameters select."""

    @abstractmethod
    def op_weights(self) -> dict[str, torch.Tensor]:
        """Per cell type, the mixing weights actually used by each edge, shape ``(edges, ops)``.

        Used for plots, entropy and genotype derivation; detached from the graph.
        """

    @abstractmethod
    def set_fixed_architecture(self, genotype: Genotype | None) -> None:
        """Run only the edges and ops of ``genotype`` (single path), or ``None`` for the mixture.

        The fixed weights are constants: α gets no gradient. For a differentiable single path
        use `mixing` with one-hot straight-through weights.
        """

    # -- cell structure (capability "cells") ------------------------------------------------
    def cell_structure(self) -> CellStructure:
        """The cell types, the ``(source, target)`` of each α row in order, and the op names of
        the α columns (the same as the space's `SearchSpace.cell_structure`)."""
        self._not_implemented("cell_structure()", CELLS)

    def alphas(self) -> dict[str, nn.Parameter]:
        """α per cell type, shape ``cell_structure().shape(cell_type)`` (edges × ops); its
        row-wise softmax is what each edge mixes its ops with outside `mixing`."""
        self._not_implemented("alphas()", CELLS)

    def cell_arch_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Per cell type, every architecture parameter with one row per edge of that type, in
        `arch_parameters` order: α, and e.g. PC-DARTS edge-normalisation logits ``(edges,)``."""
        self._not_implemented("cell_arch_parameters()", CELLS)

    def candidate_ops(self, cell_type: str, edge: int) -> list[tuple[nn.Module, ...]]:
        """The modules of α row ``edge`` of ``cell_type``: for every cell of that type (input to
        output), its candidate ops in column order. Empty when no cell of the type is built."""
        self._not_implemented("candidate_ops()", CELLS)

    # -- per-edge mixing weights (capability "mixing") -----------------------------------------
    def mixing(self, weights: Mapping[str, torch.Tensor]) -> AbstractContextManager[None]:
        """``with supernet.mixing({cell_type: w}):`` forward passes inside the block mix edge
        ``r`` of that cell type with ``w[r]`` (shape ``(edges, ops)``) instead of softmax(α).

        Cell types left out keep softmax(α); blocks nest (the inner one wins). An op whose
        weight is exactly zero does not run; the others are weighted by ``w``, so gradients
        reach whatever ``w`` was computed from (e.g. α through a straight-through sample).
        The graph built inside the block may be back-propagated after it. Raises ValueError
        for an unknown cell type or a wrong shape, and RuntimeError while a fixed architecture
        (`set_fixed_architecture`) is set.
        """
        self._not_implemented("mixing()", MIXING)

    def checked_mixing_weights(self, weights: Mapping[str, torch.Tensor]
                               ) -> dict[str, torch.Tensor]:
        """``weights`` checked against `cell_structure` (for `mixing` implementations)."""
        structure = self.cell_structure()
        out = {}
        for name, w in weights.items():
            if name not in structure.names:
                raise ValueError(f"mixing() got weights for the unknown cell type {name!r}; "
                                 f"the cell types are {structure.names}")
            if tuple(w.shape) != structure.shape(name):
                raise ValueError(f"mixing() weights of the {name!r} cells have shape "
                                 f"{tuple(w.shape)}; expected (edges, ops) = "
                                 f"{structure.shape(name)}")
            out[name] = w
        return out

    def _not_implemented(self, call: str, capability: str) -> NoReturn:
        raise NotImplementedError(
            f"{type(self).__name__} does not implement {call}: it belongs to the {capability!r} "
            f"capability, which its search space does not declare; use a space that lists "
            f"{capability!r} in SearchSpace.capabilities")

    def arch_entropy(self) -> float:
        """Mean entropy (nats) of the per-edge op distributions: falls as the search decides."""
        total, count = 0.0, 0
        for weights in self.op_weights().values():
            p = weights.clamp_min(1e-12)
            p = p / p.sum(dim=-1, keepdim=True)
            total += float(-(p * p.log()).sum(dim=-1).sum())
            count += p.shape[0]
        return total / max(count, 1)

    def arch_state_dict(self) -> Mapping[str, torch.Tensor]:
        """Copies of the architecture parameters, keyed by their parameter names."""
        arch = {id(p) for p in self.arch_parameters()}
        return {n: p.detach().clone() for n, p in self.named_parameters() if id(p) in arch}
