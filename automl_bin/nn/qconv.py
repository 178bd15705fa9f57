"""`QConv2d`: the one convolution every op uses, real or 1-bit depending on the binarizer.

The binarizer is injected (never chosen by editing imports): its weight quantizer maps the
latent real weight to the weight used in the forward pass, and, when ``binarize_input`` is set,
its activation quantizer binarizes the input. With the real-valued ``none`` binarizer both are
identities and this is an ordinary convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from automl_bin.interfaces import Binarizer

__all__ = ["QConv2d", "ConvFactory", "set_weight_binarization"]


class QConv2d(nn.Conv2d):
    """A Conv2d whose weight (and optionally input) pass through the binarizer's quantizers."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        binarizer: Binarizer,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        binarize_input: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=False)
        self.weight_quantizer = binarizer.weight_quantizer(out_channels)
        self.input_quantizer = binarizer.activation_quantizer() if binarize_input else nn.Identity()
        #: False runs the latent real weights (step 1 of two-step binary training,
        #: docs/algorithms.md §Two-step training)
        self.binarize_weight = True
        #: bit widths read by model accounting
        self.weight_bits = binarizer.weight_bits
        self.input_bits = binarizer.activation_bits if binarize_input else 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_quantizer(self.weight) if self.binarize_weight else self.weight
        x = self.input_quantizer(x)
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)


class ConvFactory:
    """Builds `QConv2d` layers with one binarizer; ops receive this instead of nn.Conv2d."""

    def __init__(self, binarizer: Binarizer, binarize_inputs: bool = True) -> None:
        self.binarizer = binarizer
        #: binarize the inputs of pointwise/regular convs when the binarizer is binary
        self.binarize_inputs = binarize_inputs and binarizer.activation_bits < 32

    def __call__(self, c_in: int, c_out: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1,
                 binarize_input: bool | None = None) -> QConv2d:
        bin_in = self.binarize_inputs if binarize_input is None else (
            binarize_input and self.binarizer.activation_bits < 32)
        return QConv2d(c_in, c_out, kernel_size, binarizer=self.binarizer, stride=stride,
                       padding=padding, dilation=dilation, groups=groups, binarize_input=bin_in)


def set_weight_binarization(model: nn.Module, enabled: bool) -> int:
    """Switch weight binarization of every `QConv2d` in ``model``; returns how many were set."""
    count = 0
    for module in model.modules():
        if isinstance(module, QConv2d):
            module.binarize_weight = enabled
            count += 1
    return count
