"""`Binarizer`: how latent real weights and activations become 1-bit values.

A binarizer hands out small modules: one weight quantizer per convolution (it may own
parameters, such as a learned per-channel scale) and activation quantizers. Forward values are
the binarized tensors; the backward pass follows the binarizer's surrogate gradient. It also
declares the bit widths it produces, which model accounting reads, and may contribute auxiliary
loss terms (e.g. a reconstruction loss) that the strategy adds to its training loss.

Torch is imported lazily so that recipe validation and ``automl-bin plugins`` stay fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["Binarizer", "EmptyConfig"]


@attrs.frozen(kw_only=True)
class EmptyConfig:
    """The config of a component that takes no parameters."""


class Binarizer(ABC):
    """Maps latent weights/activations to their 1-bit forms.

    Subclasses set ``Config`` (an attrs class validated from the recipe's ``[binarizer]``
    section), ``weight_bits`` and ``activation_bits``, and implement the two quantizer
    factories. ``weight_bits == 32`` means the binarizer is real-valued (the built-in ``none``).
    """

    Config: ClassVar[type] = EmptyConfig
    #: bits of each weight the quantizer produces (1 for binary, 32 for real)
    weight_bits: ClassVar[int] = 32
    #: bits of each activation fed to a binary convolution (1 for binary, 32 for real)
    activation_bits: ClassVar[int] = 32

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @property
    def is_binary(self) -> bool:
        """True when weights are quantized below full precision."""
        return self.weight_bits < 32

    @abstractmethod
    def weight_quantizer(self, out_channels: int) -> nn.Module:
        """A module mapping a latent conv weight ``(C_out, C_in, k, k)`` to its binarized form.

        Called once per convolution; the module may hold parameters (e.g. a learned scale).
        """

    @abstractmethod
    def activation_quantizer(self) -> nn.Module:
        """A module mapping a real activation tensor to its binarized form (surrogate backward)."""

    def reconstruction_error(self, model: nn.Module, *,
                             initialised_only: bool = False) -> torch.Tensor | None:
        """``L_R = mean_l MSE(ŵ_l, β_l∘sign ŵ_l)`` (unweighted) over the convolutions of
        ``model`` whose weights this binarizer binarizes; None when there is none.

        The one definition of the reconstruction loss: a binarizer's own training term (e.g.
        ``recon``'s ``recon_loss``) and strategies that add one (DCP-NAS ``mu_rec``) both call
        it. A binarized convolution is a module with ``weight``, ``weight_quantizer``,
        ``binarize_weight = True`` and ``weight_bits < 32`` (`automl_bin.nn.qconv.QConv2d`);
        each contributes `conv_reconstruction_error`.

        :param initialised_only: skip quantizers that have not yet seen a forward pass (a
            sampled single path trains only its own ops).
        """
        import torch

        terms = []
        for mod in model.modules():
            if (getattr(mod, "weight_quantizer", None) is None
                    or not getattr(mod, "binarize_weight", False)
                    or getattr(mod, "weight_bits", 32) >= 32):
                continue
            term = self.conv_reconstruction_error(mod, initialised_only=initialised_only)
            if term is not None:
                terms.append(term)
        return torch.stack(terms).mean() if terms else None

    def conv_reconstruction_error(self, conv: nn.Module, *,
                                  initialised_only: bool = False) -> torch.Tensor | None:
        """``MSE(ŵ, β∘sign ŵ)`` of one binarized convolution, or None to leave it out.

        Default: ``β`` = ``mean_c |Q(ŵ)|`` per output channel, the scale the weight quantizer
        applies (``xnor``: ``mean|ŵ_c|``), held constant. Binarizers with a learned scale
        override this (``recon``: ``|M|``, trained by the term).
        """
        import torch

        weight = conv.weight
        with torch.no_grad():
            q = conv.weight_quantizer(weight)
            beta = q.abs().mean(dim=tuple(range(1, q.dim())), keepdim=True)
        sign = (weight.detach() >= 0).to(weight.dtype) * 2 - 1  # 0 maps to +1, no gradient
        return (weight - beta * sign).pow(2).mean()

    def aux_losses(
        self,
        model: nn.Module,
        features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Auxiliary loss terms for ``model`` (name -> scalar tensor), already weighted.

        :param model: the network being trained; binarizers find their quantized layers in
            ``model.modules()`` (e.g. a reconstruction loss over every binarized weight).
        :param features: the network's penultimate features of the current batch, globally
            pooled and flattened to ``(N, D)`` (see `automl_bin.nn.features.capture_features`),
            or None when the caller has none; needed by feature terms such as the CP-NAS
            intra-class compactness loss.
        :param labels: the batch's class labels ``(N,)`` matching ``features``, or None.
        :return: name -> weighted scalar tensor. The caller adds their sum to the training loss
            and logs each term as a metric. Terms whose inputs are missing (or whose weight is 0)
            are left out. The default has none.
        """
        return {}
