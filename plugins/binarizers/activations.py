"""Sign functions with surrogate gradients, and the activation quantizers built on them.

- `SignSTE`: BNN/BinaryConnect sign with the clipped straight-through estimator
  (docs/algorithms.md §Sign and the straight-through estimator): forward ``sign(x)``, backward
  ``g · 1_{|x|≤1}``.
- `ApproxSign`: Bi-Real Net's sign (Liu et al. 2018, Eq. 5; docs/algorithms.md §ApproxSign):
  forward ``sign(x)``, backward the derivative of the piecewise polynomial ``F``: ``2+2x`` on
  [-1,0), ``2-2x`` on [0,1), 0 elsewhere.
- optional activation scaling, a simplified XNOR-Net ``K`` (Rastegari et al. 2016, §3.2).

Everywhere ``sign`` maps 0 to +1 (``torch.sign`` maps 0 to 0, which would zero activations).
Surrogates use the detach trick rather than ``torch.autograd.Function`` so that ``torch.func``
transforms (jvp/vjp/vmap, used by DCP-NAS second-order code) work on them.

This module imports torch: the torch-free binarizer modules import it only lazily.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = [
    "ApproxSign",
    "SignSTE",
    "approx_sign",
    "clipped_identity",
    "make_activation",
    "sign_pm1",
    "straight_through",
    "ste_sign",
]

ActivationName = Literal["ste", "approx_sign"]


def sign_pm1(x: torch.Tensor) -> torch.Tensor:
    """``where(x >= 0, 1, -1)`` in ``x``'s dtype, without gradient (0 maps to +1)."""
    return (x >= 0).to(x.dtype) * 2 - 1


def straight_through(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, the gradient of ``surrogate`` in the backward pass.

    Written ``value + (s - s.detach())`` rather than ``s + (value - s).detach()``: both have the
    same derivatives, but ``s - s.detach()`` is exactly 0, so the forward value is bit-exact
    ``value`` (the other form may round).
    """
    return value.detach() + (surrogate - surrogate.detach())


def clipped_identity(x: torch.Tensor) -> torch.Tensor:
    """A surrogate whose derivative is ``1_{|x|≤1}``, the closed interval.

    Not ``torch.clamp``: its derivative at exactly ±1 is not 1.
    """
    return x * (x.abs() <= 1).to(x.dtype)


def ste_sign(x: torch.Tensor) -> torch.Tensor:
    """Sign with the clipped straight-through gradient ``1_{|x|≤1}`` (BinaryConnect/BNN)."""
    return straight_through(sign_pm1(x), clipped_identity(x))


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real ApproxSign: forward sign, derivative ``2 - 2|x|`` on |x| < 1 and 0 elsewhere.

    The surrogate ``F(x) = 2c - c|c|`` with ``c = clamp(x, -1, 1)`` equals the piecewise
    polynomial of docs/algorithms.md §ApproxSign (``x²+2x`` on [-1,0), ``-x²+2x`` on [0,1), ±1
    outside).
    """
    c = torch.clamp(x, -1.0, 1.0)
    return straight_through(sign_pm1(x), 2 * c - c * c.abs())


def _channel_scale(x: torch.Tensor) -> torch.Tensor:
    """XNOR-Net's activation scale, simplified: mean over channels of ``|x|`` (N, 1, ...)."""
    return x.abs().mean(dim=1, keepdim=True)


class _SignActivation(nn.Module):
    """Shared body: a surrogate sign, optionally scaled by the channel mean of ``|x|``.

    With ``scale=True`` the output is ``K ⊙ sign(x)`` with ``K = mean_c |x|`` per sample and
    spatial position. XNOR-Net further convolves that map with a ``1/(k·k)`` box filter of the
    following convolution's kernel size; it is omitted here because an activation quantizer does
    not know the kernel it feeds (docs/algorithms.md §XNOR: practical codebases drop K). The
    gradient flows through K as well (plain autograd).
    """

    def __init__(self, scale: bool = False) -> None:
        super().__init__()
        self.scale = scale

    def binarize(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.binarize(x)
        return out * _channel_scale(x) if self.scale else out

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class SignSTE(_SignActivation):
    """Forward ``where(x>=0, 1, -1)``, backward the clipped identity ``1_{|x|≤1}``."""

    def binarize(self, x: torch.Tensor) -> torch.Tensor:
        return ste_sign(x)


class ApproxSign(_SignActivation):
    """Bi-Real Net's ApproxSign: forward sign, backward ``2 - 2|x|`` on |x|<1 (Bi-Real Eq. 5)."""

    def binarize(self, x: torch.Tensor) -> torch.Tensor:
        return approx_sign(x)


def make_activation(name: ActivationName, scale: bool = False) -> nn.Module:
    """The activation quantizer called ``name`` (``"ste"`` or ``"approx_sign"``)."""
    if name == "ste":
        return SignSTE(scale=scale)
    if name == "approx_sign":
        return ApproxSign(scale=scale)
    raise ValueError(f"unknown activation quantizer {name!r}; choose 'ste' or 'approx_sign'")
