"""Tangent propagation (DCP-NAS; docs/algorithms.md §Objective and gradients).

The **tangent direction** is the real-valued Parent's architecture gradient
``t = ∇_α L_P(w, α)`` (``L_P`` = cross-entropy, the minimisation convention of docs/algorithms.md),
detached. The 1-bit Child, with architecture gradient ``g = ∇_α̂ L_C`` (``L_C`` = KL to the
Parent), is pulled towards it by the constraint ``λ·D(g, t)``. ``D`` is not a loss that is
backpropagated; it modifies the α gradient. Since ``g = g(α̂)`` and ``∂g/∂α̂ = H`` (the Hessian
of ``L_C``, symmetric), the chain rule gives

    ∇_α̂ [L_C + λ·D(g(α̂), t)] = g + λ·H·∇_g D = g + 2λ·H·v,   v := ½·∇_g D     (book Eq. 4.33)

and `distance_direction` returns ``v`` for each distance (`tangent_distance` gives ``D``):

- ``fro``: ``D = ‖g − t‖²_F`` → ``∇_g D = 2(g − t)`` → ``v = g − t`` (the book's form).
- ``l1``: ``D = ‖g − t‖₁ = Σ|g − t|`` → ``∇_g D = sign(g − t)`` (subgradient 0 where equal)
  → ``v = sign(g − t)/2``.
- ``cosine``: ``D = 1 − cos(g, t)``, ``cos = gᵀt/(‖g‖‖t‖)``. With ``ĝ = g/‖g‖``, ``t̂ = t/‖t‖``:
  ``∇_g cos = (t̂ − cos·ĝ)/‖g‖`` → ``∇_g D = −(t̂ − cos·ĝ)/‖g‖`` →
  ``v = (cos·ĝ − t̂)/(2‖g‖)`` (zero when ``g`` or ``t`` is zero; orthogonal to ``g``).

The α tensors (normal and reduction α, edge logits) are treated as one vector: ``D`` and the
norms run over their concatenation. `tangent_modified_gradient` forms ``g + 2λ·H v`` from an
HVP (`automl_bin.search.hvp`). `TangentEMA` keeps an exponential moving average of Parent α
gradients (``tangent_mode = "ema"``). No plugin imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import torch
from torch import nn

from automl_bin.search.hvp import dot, norm
from automl_bin.training import LossFn, cross_entropy_loss

__all__ = ["Distance", "DISTANCES", "TangentEMA", "tangent_direction", "tangent_distance",
           "distance_direction", "tangent_modified_gradient"]

Distance = Literal["fro", "l1", "cosine"]
DISTANCES: tuple[str, ...] = ("fro", "l1", "cosine")
Tensors = Sequence[torch.Tensor]

#: norms below this count as zero in the cosine distance
_TINY = 1e-12


def tangent_direction(model: nn.Module, params: Tensors, x: torch.Tensor, y: torch.Tensor,
                      loss_fn: LossFn = cross_entropy_loss
                      ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """``t = ∇_params loss_fn(model, x, y)`` detached, in the model's current mode.

    :return: ``(t, logits, loss)``, the logits and loss detached, so the caller can reuse the
        same forward pass (DCP-NAS: the Parent's predictive distribution for the KL).
    """
    loss, logits = loss_fn(model, x, y)
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    t = [torch.zeros_like(p) if g is None else g.detach() for g, p in zip(grads, params)]
    return t, logits.detach(), loss.detach()


def tangent_distance(g: Tensors, t: Tensors, kind: Distance = "fro") -> torch.Tensor:
    """``D(g, t)`` (differentiable in ``g``): ``‖g−t‖²``, ``‖g−t‖₁`` or ``1 − cos(g, t)``."""
    if kind == "fro":
        return sum(((a - b) ** 2).sum() for a, b in zip(g, t))  # type: ignore[return-value]
    if kind == "l1":
        return sum((a - b).abs().sum() for a, b in zip(g, t))  # type: ignore[return-value]
    if kind == "cosine":
        ng, nt = norm(g), norm(t)
        denom = (ng * nt).clamp_min(_TINY)
        return 1.0 - dot(g, t) / denom
    raise ValueError(f"unknown tangent distance {kind!r}; choose one of {DISTANCES}")


def distance_direction(g: Tensors, t: Tensors, kind: Distance = "fro") -> list[torch.Tensor]:
    """``v = ½·∇_g D(g, t)``, so that the modified gradient is ``g + 2λ·H v`` (module doc)."""
    g = [a.detach() for a in g]
    t = [b.detach() for b in t]
    if kind == "fro":
        return [a - b for a, b in zip(g, t)]
    if kind == "l1":
        return [torch.sign(a - b) / 2 for a, b in zip(g, t)]
    if kind == "cosine":
        ng, nt = float(norm(g)), float(norm(t))
        if ng < _TINY or nt < _TINY:
            return [torch.zeros_like(a) for a in g]
        cos = float(dot(g, t)) / (ng * nt)
        return [(cos * a / ng - b / nt) / (2 * ng) for a, b in zip(g, t)]
    raise ValueError(f"unknown tangent distance {kind!r}; choose one of {DISTANCES}")


def tangent_modified_gradient(g: Tensors, hv: Tensors, lam: float) -> list[torch.Tensor]:
    """``g + 2λ·Hv`` (book Eq. 4.33)."""
    return [a + 2.0 * lam * h for a, h in zip(g, hv)]


def cap_tangent_term(g: Tensors, hv: Tensors, lam: float, max_ratio: float
                     ) -> tuple[list[torch.Tensor], float]:
    """Scale ``Hv`` so that ``‖2λ·Hv‖ ≤ max_ratio·‖g‖`` (a trust region on the second-order
    term; ``max_ratio = 0`` leaves it alone). The direction of ``Hv`` is kept.

    The per-sample Fisher grows with the squared per-sample gradients, so at one λ the term
    ranges over two orders of magnitude across seeds and epochs; the cap keeps a λ that acts
    early from letting the term swamp ``g`` later (docs/algorithms.md, "tangent cap").

    :return: ``(Hv scaled, the scale applied ≤ 1)``.
    """
    if max_ratio <= 0 or lam <= 0:
        return list(hv), 1.0
    g_norm = float(torch.sqrt(sum((x.double() ** 2).sum() for x in g)))
    term = 2.0 * lam * float(torch.sqrt(sum((h.double() ** 2).sum() for h in hv)))
    if term <= max_ratio * g_norm or term == 0.0:
        return list(hv), 1.0
    scale = max_ratio * g_norm / term
    return [h * scale for h in hv], scale


@attrs.define(kw_only=True, eq=False)
class TangentEMA:
    """Exponential moving average of tangent directions: ``t ← d·t + (1 − d)·g``.

    The first update sets ``t = g``. ``value`` is None until then.
    """

    decay: float = attrs.field(default=0.9, validator=[attrs.validators.ge(0),
                                                       attrs.validators.lt(1)])
    value: list[torch.Tensor] | None = None
    updates: int = 0

    def update(self, grads: Tensors) -> None:
        grads = [g.detach() for g in grads]
        if self.value is None or len(self.value) != len(grads):
            self.value = [g.clone() for g in grads]
        else:
            for v, g in zip(self.value, grads):
                v.mul_(self.decay).add_(g, alpha=1.0 - self.decay)
        self.updates += 1

    def reset(self) -> None:
        self.value, self.updates = None, 0

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "value": None if self.value is None else [v.clone() for v in self.value]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        value = state.get("value")
        self.value = None if value is None else [v.clone() for v in value]
        self.updates = int(state.get("updates", 0))
