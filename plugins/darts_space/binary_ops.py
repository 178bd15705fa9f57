"""The binary DARTS op set used by CP-NAS / DCP-NAS (docs/algorithms.md §Operation sets).

Structure as in the DCP-NAS evaluation code [CODE: YanjingLi0202/DCP-NAS
models/darts_ops_step2_sc_out.py]: every 1-bit convolution is preceded by a real BN, followed by
BN and PReLU (no ReLU: a ReLU directly before ``sign`` would make every input +1), and a
Bi-Real-style real shortcut wraps the block when the shape allows. Pointwise convolutions
binarize their input activations; depthwise ones only when ``bin_act_on_depthwise`` (the eval
code does not). Pooling, identity, BN and PReLU stay real.
"""

from __future__ import annotations

import torch
from torch import nn

from automl_bin.nn.qconv import ConvFactory

__all__ = ["BinDilConv", "BinSepConv", "BinReLUConvBN", "BinFactorizedReduce", "binary_ops"]


class BinDilConv(nn.Module):
    """BN → depthwise 1-bit k×k (dilated) → BN → PReLU → pointwise 1-bit 1×1 → BN
    (→ + input when stride 1 and shapes match) → PReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool, conv: ConvFactory, bin_act_on_depthwise: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in, affine=affine),
            conv(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation,
                 groups=c_in, binarize_input=bin_act_on_depthwise),
            nn.BatchNorm2d(c_in, affine=affine),
            nn.PReLU(c_in),
            conv(c_in, c_out, 1, binarize_input=True),
            nn.BatchNorm2d(c_out, affine=affine),
        )
        self.shortcut = stride == 1 and c_in == c_out
        self.act = nn.PReLU(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.act(y + x if self.shortcut else y)


class BinSepConv(nn.Sequential):
    """Two BinDilConv blocks without dilation; the stride is in the first."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool, conv: ConvFactory, bin_act_on_depthwise: bool) -> None:
        super().__init__(
            BinDilConv(c_in, c_in, kernel, stride, padding, 1, affine, conv, bin_act_on_depthwise),
            BinDilConv(c_in, c_out, kernel, 1, padding, 1, affine, conv, bin_act_on_depthwise),
        )


class BinReLUConvBN(nn.Sequential):
    """The preprocess of the binary cells: BN → 1-bit 1×1 conv (real input) → BN → PReLU."""

    def __init__(self, c_in: int, c_out: int, affine: bool, conv: ConvFactory) -> None:
        super().__init__(
            nn.BatchNorm2d(c_in, affine=affine),
            conv(c_in, c_out, 1, binarize_input=False),
            nn.BatchNorm2d(c_out, affine=affine),
            nn.PReLU(c_out),
        )


class BinFactorizedReduce(nn.Module):
    """BN → two strided 1-bit 1×1 convs on offset grids (real inputs) → concat → BN → PReLU."""

    def __init__(self, c_in: int, c_out: int, affine: bool, conv: ConvFactory) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.bn_in = nn.BatchNorm2d(c_in, affine=affine)
        self.conv_1 = conv(c_in, c_out // 2, 1, stride=2, binarize_input=False)
        self.conv_2 = conv(c_in, c_out // 2, 1, stride=2, binarize_input=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)
        self.act = nn.PReLU(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn_in(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.act(self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)))
