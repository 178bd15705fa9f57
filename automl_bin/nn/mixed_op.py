"""`MixedOp`: the DARTS continuous relaxation of one edge (DARTS Eq. 2), implemented once.

``MixedOp(x, weights) = Σ_{m: weights[m] ≠ 0} weights[m] · op_m(x)``. Ops whose weight is exactly
zero are skipped, so a one-hot ``weights`` runs a single path (used by sampling strategies and
the supernet estimator) at the cost of one op. The weights stay in the graph: with the
straight-through one-hot of `hard_one_hot` (``w = h − s.detach() + s``: the selected weight is 1
in value but carries ``∂/∂s``, the others are exactly 0), only the selected op runs, and the
soft weights ``s`` (hence α) still get the gradient ``⟨∂L/∂out, o_selected(x)⟩`` (GDAS).

A *recorder* (`MixedOpRecorder`, set by `automl_bin.search.per_sample.record_mixed_ops`) sees
every differentiable call: the mixing weights, each op's output and the mixed output. That is
all a per-sample α gradient needs (``⟨∂L/∂m[x], o_j(x)⟩``), read from tensors autograd keeps
anyway, so recording costs no extra forward work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn

__all__ = ["MixedOp", "MixedOpRecorder", "hard_one_hot"]


def hard_one_hot(soft: torch.Tensor) -> torch.Tensor:
    """Row-wise one-hot of the argmax of ``soft`` in the forward, ``soft``'s gradient in the
    backward (straight-through): ``one_hot − soft.detach() + soft``; the other entries are
    exactly 0, so `MixedOp` runs only the selected op."""
    index = soft.detach().argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return one_hot - soft.detach() + soft


class MixedOpRecorder(Protocol):
    def __call__(self, weights: torch.Tensor, outputs: Sequence[torch.Tensor | None],
                 mixed: torch.Tensor) -> None:
        """``outputs[j]`` is ``op_j(x)`` (None for an op that did not run); ``mixed`` the sum."""


class MixedOp(nn.Module):
    """A weighted sum of candidate operations with identical output shapes."""

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        #: set only inside `record_mixed_ops`; None otherwise
        self.recorder: MixedOpRecorder | None = None

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                run: Sequence[bool] | None = None) -> torch.Tensor:
        # weights: (num_ops,), e.g. softmax(alpha) of this edge. run[m] False skips op m, whose
        # weight must be 0: a supernet reads its weights' zeros once per cell type, not once per
        # edge (one device sync each); None reads them here
        out: torch.Tensor | None = None
        recorder = getattr(self, "recorder", None) if weights.requires_grad else None
        outputs: list[torch.Tensor | None] = []
        nonzero = (weights != 0).tolist() if run is None else run
        for w, keep, op in zip(weights, nonzero, self.ops):
            if not keep:
                outputs.append(None)
                continue
            o = op(x)
            outputs.append(o)
            y = w * o
            out = y if out is None else out + y
        if out is None:  # every weight zero: the edge contributes nothing
            return self.ops[0](x) * 0.0
        if recorder is not None:
            recorder(weights, outputs, out)
        return out
