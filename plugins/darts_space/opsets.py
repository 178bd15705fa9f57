"""Op sets: how each candidate op, the cell preprocessing and the reduction are built.

``real`` is the DARTS implementation (ReLU-conv-BN); ``binary`` the 1-bit implementation of
the same op names (docs/algorithms.md §Operation sets). Both build their convolutions through
the injected `ConvFactory`, so the binarizer decides the precision. In the real style,
convolution *inputs* are never sign-binarized: each conv follows a ReLU, and sign(ReLU(x)) is
always +1, so a 1-bit binarizer there binarizes weights only (BNAS1-style).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs
from torch import nn

from automl_bin.nn.qconv import ConvFactory
from automl_bin_plugins.darts_space import ops as real
from automl_bin_plugins.darts_space.binary_ops import (BinDilConv, BinFactorizedReduce,
                                                        BinReLUConvBN, BinSepConv)

__all__ = ["OpSet", "get_op_set"]

OpBuilder = Callable[[int, int, bool, ConvFactory], nn.Module]
PreBuilder = Callable[[int, int, bool, ConvFactory], nn.Module]


@attrs.frozen
class OpSet:
    style: str
    ops: Mapping[str, OpBuilder]
    #: 1×1 preprocessing of a cell input (c_in, c_out, affine, conv)
    preprocess: PreBuilder
    #: halving the resolution of input 0 after a reduction cell
    reduce: PreBuilder
    #: whether 1-bit binarizers also binarize conv inputs in this style
    binarize_inputs: bool


def _binary_ops(bin_act_on_depthwise: bool) -> dict[str, OpBuilder]:
    b = bin_act_on_depthwise
    return {
        "none": lambda c, s, a, conv: real.Zero(s),
        # PoolBN: the eval code follows pooling with a BN in the discrete network too
        "max_pool_3x3": lambda c, s, a, conv: nn.Sequential(
            real.OPS["max_pool_3x3"](c, s, a, conv), nn.BatchNorm2d(c, affine=a)),
        "avg_pool_3x3": lambda c, s, a, conv: nn.Sequential(
            real.OPS["avg_pool_3x3"](c, s, a, conv), nn.BatchNorm2d(c, affine=a)),
        "skip_connect": lambda c, s, a, conv: (nn.Identity() if s == 1
                                               else BinFactorizedReduce(c, c, a, conv)),
        "sep_conv_3x3": lambda c, s, a, conv: BinSepConv(c, c, 3, s, 1, a, conv, b),
        "sep_conv_5x5": lambda c, s, a, conv: BinSepConv(c, c, 5, s, 2, a, conv, b),
        "dil_conv_3x3": lambda c, s, a, conv: BinDilConv(c, c, 3, s, 2, 2, a, conv, b),
        "dil_conv_5x5": lambda c, s, a, conv: BinDilConv(c, c, 5, s, 4, 2, a, conv, b),
    }


def get_op_set(style: str, bin_act_on_depthwise: bool = False) -> OpSet:
    """The op set of ``style`` (``"real"`` or ``"binary"``)."""
    if style == "real":
        return OpSet(style="real", ops=real.OPS,
                     preprocess=lambda ci, co, a, conv: real.ReLUConvBN(ci, co, 1, 1, 0, a, conv),
                     reduce=lambda ci, co, a, conv: real.FactorizedReduce(ci, co, a, conv),
                     binarize_inputs=False)
    if style == "binary":
        return OpSet(style="binary", ops=_binary_ops(bin_act_on_depthwise),
                     preprocess=lambda ci, co, a, conv: BinReLUConvBN(ci, co, a, conv),
                     reduce=lambda ci, co, a, conv: BinFactorizedReduce(ci, co, a, conv),
                     binarize_inputs=True)
    raise ValueError(f"unknown op style {style!r}; use 'real' or 'binary'")
