"""The DARTS candidate operations (docs/algorithms.md §Operation sets), built via a conv factory.

``OPS[name](C, stride, affine, conv)`` returns the module. ``conv`` is a
`automl_bin.nn.qconv.ConvFactory`, so the same table yields real or binarized convolutions.
Every op keeps the channel count ``C``; stride 2 halves the spatial size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from automl_bin.nn.qconv import ConvFactory

__all__ = ["OPS", "REAL_OPS", "Zero", "FactorizedReduce", "ReLUConvBN"]

#: the DARTS/PC-DARTS order, ``none`` first [CODE: quark0/darts genotypes.py]
REAL_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (spatially strided)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    """ReLU → conv → BN (the DARTS cell preprocessing)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool, conv: ConvFactory) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            conv(c_in, c_out, kernel, stride=stride, padding=padding),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU → depthwise k×k (dilated) → pointwise 1×1 → BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool, conv: ConvFactory) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            conv(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation,
                 groups=c_in, binarize_input=False),
            conv(c_in, c_out, 1),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv blocks without dilation (stride only in the first)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool, conv: ConvFactory) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine, conv),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine, conv),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two strided 1×1 convs on offset grids, concatenated."""

    def __init__(self, c_in: int, c_out: int, affine: bool, conv: ConvFactory) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = conv(c_in, c_out // 2, 1, stride=2)
        self.conv_2 = conv(c_in, c_out // 2, 1, stride=2)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # pad so the shifted grid has the same size for odd inputs (e.g. 7×7 on Fashion-MNIST)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _pool(kind: str) -> Callable[[int, int, bool, ConvFactory], nn.Module]:
    def build(c: int, stride: int, affine: bool, conv: ConvFactory) -> nn.Module:
        if kind == "max":
            return nn.MaxPool2d(3, stride=stride, padding=1)
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

    return build


OPS: dict[str, Callable[[int, int, bool, ConvFactory], nn.Module]] = {
    "none": lambda c, s, a, conv: Zero(s),
    "max_pool_3x3": _pool("max"),
    "avg_pool_3x3": _pool("avg"),
    "skip_connect": lambda c, s, a, conv: nn.Identity() if s == 1 else FactorizedReduce(c, c, a, conv),
    "sep_conv_3x3": lambda c, s, a, conv: SepConv(c, c, 3, s, 1, a, conv),
    "sep_conv_5x5": lambda c, s, a, conv: SepConv(c, c, 5, s, 2, a, conv),
    "dil_conv_3x3": lambda c, s, a, conv: DilConv(c, c, 3, s, 2, 2, a, conv),
    "dil_conv_5x5": lambda c, s, a, conv: DilConv(c, c, 5, s, 4, 2, a, conv),
}
