"""The ``xnor`` binarizer: XNOR-Net weights (Rastegari et al. 2016, Eq. 3–7).

See docs/algorithms.md §XNOR.

Each output filter ``c`` of a conv weight ``W (C_out, C_in, k, k)`` becomes ``α_c · sign(W_c)``
with ``α_c = mean(|W_c|)`` = ``‖W_c‖₁ / n``, ``n = C_in·k·k`` (sign maps 0 to +1). Two backward
rules are offered (``weight_grad``):

- ``"ste"`` (default): the DCP-NAS ``HardBinaryConv`` form: α detached, ``∂L/∂W = g · 1_{|W|≤1}``.
- ``"xnor"``: the XNOR-Net paper's Eq. 7, ``∂L/∂W = g ⊙ (1/n + α_c · 1_{|W|≤1})``, element-wise
  (the paper's simplification: the cross terms of ∂α/∂W are ignored).

Activations use `SignSTE` or `ApproxSign` (Bi-Real), optionally scaled (XNOR's ``K``, see
`automl_bin_plugins.binarizers.activations`).

Importing this module stays torch-free (``automl-bin plugins``/``check``): the quantizer module
class is defined on first use (`__getattr__` exposes it as ``XnorWeightQuantizer``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Literal

import attrs

from automl_bin.interfaces import Binarizer

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["XnorBinarizer", "XnorConfig", "xnor_binarize"]

_ACTIVATIONS = ("ste", "approx_sign")
_WEIGHT_GRADS = ("ste", "xnor")


@attrs.frozen(kw_only=True)
class XnorConfig:
    #: activation sign: "ste" (clipped identity backward) or "approx_sign" (Bi-Real polynomial)
    activation: Literal["ste", "approx_sign"] = attrs.field(
        default="approx_sign", validator=attrs.validators.in_(_ACTIVATIONS))
    #: scale binary activations by the channel mean of |x| (XNOR's K without the box filter)
    act_scale: bool = False
    #: weight backward: "ste" = g·1_{|W|≤1}, α detached (DCP-NAS HardBinaryConv);
    #: "xnor" = g·(1/n + α_c·1_{|W|≤1}) (XNOR-Net Eq. 7)
    weight_grad: Literal["ste", "xnor"] = attrs.field(
        default="ste", validator=attrs.validators.in_(_WEIGHT_GRADS))


def xnor_binarize(weight: torch.Tensor, weight_grad: str = "ste") -> torch.Tensor:
    """``α_c · sign(W)`` per output channel, with the backward rule ``weight_grad``.

    The forward value is exactly ``±α_c`` (the surrogate only shapes the gradient; see
    `straight_through`).
    """
    from automl_bin_plugins.binarizers.activations import (
        clipped_identity,
        sign_pm1,
        straight_through,
    )

    dims = tuple(range(1, weight.dim()))
    alpha = weight.abs().mean(dim=dims, keepdim=True).detach()
    value = alpha * sign_pm1(weight)
    clipped = clipped_identity(weight)  # derivative 1_{|W|≤1}
    if weight_grad == "ste":
        surrogate = clipped
    elif weight_grad == "xnor":
        n = weight[0].numel()
        # d/dW of W/n + α·clip(W) (α constant) is 1/n + α·1_{|W|≤1}
        surrogate = weight / n + alpha * clipped
    else:
        raise ValueError(f"unknown weight_grad {weight_grad!r}; choose 'ste' or 'xnor'")
    return straight_through(value, surrogate)


@functools.cache  # defines the class once, on first use, so that importing stays torch-free
def _classes() -> dict[str, type]:
    from torch import nn

    class XnorWeightQuantizer(nn.Module):
        """Maps a latent conv weight to ``α_c · sign(W)`` (stateless)."""

        def __init__(self, weight_grad: str = "ste") -> None:
            super().__init__()
            self.weight_grad = weight_grad

        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            return xnor_binarize(weight, self.weight_grad)

        def extra_repr(self) -> str:
            return f"weight_grad={self.weight_grad!r}"

    # a module-level name, so that pickling finds it through __getattr__ below
    XnorWeightQuantizer.__qualname__ = "XnorWeightQuantizer"
    return {"XnorWeightQuantizer": XnorWeightQuantizer}


def __getattr__(name: str) -> Any:
    if name == "XnorWeightQuantizer":
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class XnorBinarizer(Binarizer):
    """XNOR-Net: 1-bit weights scaled by mean|W_c| per filter, 1-bit activations."""

    Config = XnorConfig
    weight_bits = 1
    activation_bits = 1

    def weight_quantizer(self, out_channels: int) -> nn.Module:
        return _classes()["XnorWeightQuantizer"](self.config.weight_grad)

    def activation_quantizer(self) -> nn.Module:
        from automl_bin_plugins.binarizers.activations import make_activation

        return make_activation(self.config.activation, self.config.act_scale)
