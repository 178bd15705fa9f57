"""`Supernet`: the weight-sharing network a search space builds (imports torch).

Architecture parameters (α, and e.g. PC-DARTS edge weights) are registered parameters, but they
are kept apart from the weights: `arch_parameters` and `weight_parameters` partition
``parameters()``. Strategies steer the supernet through this interface only.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

import torch
from torch import nn

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
        """Run only the edges and ops of ``genotype`` (single path), or ``None`` for the mixture."""

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
