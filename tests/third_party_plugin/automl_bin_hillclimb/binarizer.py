"""``plain_sign``: a third-party 1-bit binarizer (sign weights and activations, no scale)."""

from __future__ import annotations

from typing import Any

import attrs

from automl_bin import hookimpl
from automl_bin.interfaces import Binarizer


@attrs.frozen(kw_only=True)
class PlainSignConfig:
    #: gradient passes where |x| <= clip
    clip: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))


class PlainSign(Binarizer):
    Config = PlainSignConfig
    weight_bits = 1
    activation_bits = 1

    def weight_quantizer(self, out_channels: int) -> Any:
        return _sign_module(self.config.clip)

    def activation_quantizer(self) -> Any:
        return _sign_module(self.config.clip)


def _sign_module(clip: float) -> Any:
    import torch
    from torch import nn

    class Sign(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hard = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
            soft = x.clamp(-clip, clip)
            return soft + (hard - soft).detach()

    return Sign()


@hookimpl
def register_binarizers(register: Any) -> None:
    register("plain_sign", PlainSign)
