"""The ``none`` binarizer: real-valued weights and activations (the default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin.interfaces import Binarizer

if TYPE_CHECKING:
    from torch import nn


class NoBinarizer(Binarizer):
    """Leaves weights and activations in full precision (32 bits)."""

    weight_bits = 32
    activation_bits = 32

    def weight_quantizer(self, out_channels: int) -> nn.Module:
        from torch import nn

        return nn.Identity()

    def activation_quantizer(self) -> nn.Module:
        from torch import nn

        return nn.Identity()


@hookimpl
def register_binarizers(register: Register) -> None:
    register("none", NoBinarizer)
