"""`MixedOp`: the DARTS continuous relaxation of one edge (DARTS Eq. 2), implemented once.

``MixedOp(x, weights) = Σ_m weights[m] · op_m(x)``. Ops whose weight is exactly zero are skipped,
so a one-hot ``weights`` runs a single path (used by sampling strategies and the supernet
estimator) at the cost of one op.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MixedOp"]


class MixedOp(nn.Module):
    """A weighted sum of candidate operations with identical output shapes."""

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # weights: (num_ops,), e.g. softmax(alpha) of this edge
        out: torch.Tensor | None = None
        nonzero = (weights != 0).tolist() if not weights.requires_grad else [True] * len(self.ops)
        for w, keep, op in zip(weights, nonzero, self.ops):
            if not keep:
                continue
            y = w * op(x)
            out = y if out is None else out + y
        if out is None:  # every weight zero: the edge contributes nothing
            return self.ops[0](x) * 0.0
        return out
