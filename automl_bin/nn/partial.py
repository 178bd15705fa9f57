"""PC-DARTS partial channel connections (Xu et al. ICLR 2020; docs/algorithms.md §PC-DARTS).

Only the first ``C/k`` channels of an edge's input go through the mixed op; the others bypass
it (max-pooled on a reduction edge so the sizes match), and a channel shuffle with ``k`` groups
makes every later layer see a different subset. The sampled slice is fixed, not random. With
``k = 1`` this is exactly the full mixed op.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from automl_bin.nn.mixed_op import MixedOp

__all__ = ["channel_shuffle", "PartialChannelOp"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups: (N, g·c, H, W) → channels reordered c-major."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class PartialChannelOp(nn.Module):
    """Wraps a `MixedOp` built for ``C/k`` channels into a ``C``-channel edge."""

    def __init__(self, mixed: MixedOp, k: int, stride: int) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"partial_k must be >= 1, got {k}")
        self.mixed = mixed
        self.k = k
        self.bypass = nn.MaxPool2d(2, 2) if stride == 2 else nn.Identity()

    @property
    def ops(self) -> nn.ModuleList:
        """The candidate ops of the edge (built for ``C/k`` channels), in column order."""
        return self.mixed.ops

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                run: Sequence[bool] | None = None) -> torch.Tensor:
        # run: which ops run (see MixedOp.forward)
        if self.k == 1:
            return self.mixed(x, weights, run)
        part = x.shape[1] // self.k
        y = self.mixed(x[:, :part], weights, run)
        rest = self.bypass(x[:, part:])
        if rest.shape[-2:] != y.shape[-2:]:  # odd sizes: pooling floors, strided convs ceil
            rest = nn.functional.pad(rest, (0, y.shape[-1] - rest.shape[-1],
                                            0, y.shape[-2] - rest.shape[-2]))
        return channel_shuffle(torch.cat([y, rest], dim=1), self.k)
