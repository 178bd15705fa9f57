"""Decoupled optimization of α (DCP-NAS D.O., book Eq. 4.42–4.53).

See docs/algorithms.md §Decoupled optimisation (D.O.).

The weights depend on α (``∂w/∂α ≠ 0``); the book replaces the unknown coupling vector by a
learnable non-negative ``ψ̃`` and backtracks the architecture step on the edges whose weights
are large. Per α tensor (normal and reduction α, and PC-DARTS edge logits when present):

1. plain step (Adam, by the caller): ``α^{t+1} = α^t − η₁·∂L/∂α^t``;
2. backtrack (Eq. 4.50, 4.52): with ``R(w_e)`` the weight norm of edge ``e`` (`EdgeWeightNorms`:
   mean squared latent conv weights over the edge's ops, pooled over every cell of that type),
   edges ranked ascending by ``R`` (0-based rank, ties by index) and ``τ = ⌊E·tau_ratio⌋``,
   every edge of rank ``≥ τ`` (the ``E − τ`` largest; the book's 1-based ``rank > τ``) gets
   ``α̃_e = α_e^{t+1} + η·ψ̃_e ⊙ α_e^t`` with ``η = η₁·η₂`` (arch lr × weight lr); the others
   keep ``α_e^{t+1}``. The result is committed into α in place (the Adam state is untouched);
3. ψ̃ update (Eq. 4.51) at the next step: the committed α is ``α_used = α^{t+1} + η·ψ̃⊙α^t``
   (``α^t`` constant), so ``∂L/∂ψ̃ = η·mask ⊙ (∂L/∂α_used) ⊙ α^t``, where ``∂L/∂α_used`` is the
   α gradient the next step computes at the committed α; then ``ψ̃ ← |ψ̃ − η_ψ·∂L/∂ψ̃|``.

``ψ̃`` has the shape of its α tensor and starts at 0, where the method is plain DARTS. The
functions below work on tensors (tests drive them directly); `DecoupledState` holds ``ψ̃`` and the
pending ``(α^t, mask, η)`` of the last backtrack, and `update_psi` / `backtrack_` apply steps 3
and 2 to a list of α parameters. No plugin imports: the edges and their modules come from the
supernet's documented cell calls (`Supernet.cell_structure`, `Supernet.candidate_ops`,
`Supernet.cell_arch_parameters`; capability ``"cells"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from automl_bin.interfaces.cell_structure import CellStructure
from automl_bin.interfaces.supernet import Supernet

__all__ = ["DecoupledState", "EdgeWeightNorms", "backtrack_mask", "backtrack", "psi_gradient",
           "psi_step", "update_psi", "backtrack_", "arch_parameter_kinds"]

Tensors = Sequence[torch.Tensor]


# -- tensor functions ---------------------------------------------------------------------------
def backtrack_mask(norms: torch.Tensor, tau_ratio: float) -> torch.Tensor:
    """Boolean ``(E,)``: True for the edges whose ascending rank of ``R`` is ``≥ ⌊E·tau_ratio⌋``."""
    e = norms.numel()
    tau = int(e * tau_ratio)  # floor for non-negative values
    order = torch.sort(norms.detach().flatten(), stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(e, device=order.device)
    return rank >= tau


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``mask (E,)`` broadcast over the trailing dimensions of ``like (E, ...)``."""
    return mask.to(like.dtype).reshape(mask.shape + (1,) * (like.dim() - 1))


def backtrack(alpha_new: torch.Tensor, alpha_prev: torch.Tensor, psi: torch.Tensor,
              mask: torch.Tensor, eta: float) -> torch.Tensor:
    """``α̃ = α^{t+1} + η·mask ⊙ ψ̃ ⊙ α^t`` (rows where ``mask`` is False unchanged)."""
    return alpha_new + eta * _rows(mask, alpha_new) * psi * alpha_prev


def psi_gradient(grad_alpha_used: torch.Tensor, alpha_prev: torch.Tensor, mask: torch.Tensor,
                 eta: float) -> torch.Tensor:
    """``∂L/∂ψ̃ = η·mask ⊙ (∂L/∂α_used) ⊙ α^t``."""
    return eta * _rows(mask, grad_alpha_used) * grad_alpha_used * alpha_prev


def psi_step(psi: torch.Tensor, grad_psi: torch.Tensor, psi_lr: float) -> torch.Tensor:
    """Eq. 4.51: ``|ψ̃ − η_ψ·∂L/∂ψ̃|``."""
    return (psi - psi_lr * grad_psi).abs()


# -- state and in-place steps -------------------------------------------------------------------
@attrs.define(kw_only=True, eq=False)
class DecoupledState:
    """``ψ̃`` per α tensor and the pending ``(α^t, mask, η)`` of the last backtrack."""

    psi: list[torch.Tensor]
    alpha_prev: list[torch.Tensor] | None = None
    masks: list[torch.Tensor | None] | None = None
    eta: float = 0.0

    @classmethod
    def zeros_like(cls, alphas: Tensors) -> DecoupledState:
        return cls(psi=[torch.zeros_like(a.detach()) for a in alphas])

    @classmethod
    def full_like(cls, alphas: Tensors, value: float) -> DecoupledState:
        """``ψ̃₀ = value`` everywhere (at 0 the first backtracks are no-ops: plain DARTS)."""
        return cls(psi=[torch.full_like(a.detach(), value) for a in alphas])

    def clear_pending(self) -> None:
        """Forget the last backtrack (α was overwritten, e.g. by architecture inheritance)."""
        self.alpha_prev, self.masks, self.eta = None, None, 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"psi": [p.clone() for p in self.psi],
                "alpha_prev": None if self.alpha_prev is None else
                [a.clone() for a in self.alpha_prev],
                "masks": None if self.masks is None else
                [None if m is None else m.clone() for m in self.masks],
                "eta": self.eta}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.psi = [p.clone() for p in state["psi"]]
        prev, masks = state.get("alpha_prev"), state.get("masks")
        self.alpha_prev = None if prev is None else [a.clone() for a in prev]
        self.masks = None if masks is None else [None if m is None else m.clone() for m in masks]
        self.eta = float(state.get("eta", 0.0))


def update_psi(state: DecoupledState, grads: Tensors, psi_lr: float) -> None:
    """Step 3: ``ψ̃ ← |ψ̃ − η_ψ·η·mask⊙g⊙α^t|`` with ``g`` the α gradient at the committed α.

    Does nothing before the first backtrack (or after `DecoupledState.clear_pending`).
    """
    if state.alpha_prev is None or state.masks is None:
        return
    for i, (g, prev, mask) in enumerate(zip(grads, state.alpha_prev, state.masks)):
        if mask is None:
            continue
        state.psi[i] = psi_step(state.psi[i], psi_gradient(g.detach(), prev, mask, state.eta),
                                psi_lr)


def backtrack_(state: DecoupledState, alphas: Sequence[nn.Parameter], alpha_prev: Tensors,
               norms: Sequence[torch.Tensor | None], eta: float,
               tau_ratio: float) -> tuple[float, float]:
    """Step 2 in place: commit ``α̃`` into ``alphas`` (after the optimizer step) and remember
    ``(α^t, mask, η)`` for `update_psi`.

    :param alpha_prev: copies of the α tensors before the optimizer step (``α^t``).
    :param norms: per α tensor, ``R`` of its edges ``(E,)`` (first dimension of the tensor), or
        None to leave that tensor alone.
    :return: ``(‖backtrack‖, ‖optimizer step‖)`` over the backtracked rows, the size of the
        mechanism's effect (their ratio is logged as ``decoupled_ratio``).
    """
    masks: list[torch.Tensor | None] = []
    back_sq, step_sq = 0.0, 0.0
    with torch.no_grad():
        for a, prev, psi, r in zip(alphas, alpha_prev, state.psi, norms):
            if r is None or r.numel() != a.shape[0]:
                masks.append(None)
                continue
            mask = backtrack_mask(r, tau_ratio).to(a.device)
            rows = _rows(mask, a)
            step_sq += float((((a - prev) * rows) ** 2).sum())
            back_sq += float(((eta * rows * psi * prev) ** 2).sum())
            a.copy_(backtrack(a.detach(), prev, psi, mask, eta))
            masks.append(mask)
    state.alpha_prev = [p.detach().clone() for p in alpha_prev]
    state.masks = masks
    state.eta = eta
    return back_sq ** 0.5, step_sq ** 0.5


# -- R(w_e) for DARTS-style supernets -------------------------------------------------------------
class EdgeWeightNorms:
    """``R(w_e)`` per cell type: mean squared latent conv weights of edge ``e``, pooled over all
    cells of that type (sum of squares / element count).

    Reads `Supernet.candidate_ops` for every edge of `Supernet.cell_structure`; cell types
    without a built cell are left out. The latent weights are the ``weight`` of every
    convolution inside the edge's ops (for a 1-bit supernet the real ŵ, not its sign); an edge
    without convolutions uses all of its parameters. The parameter lists are collected once;
    call the object for the values.
    """

    def __init__(self, supernet: Supernet) -> None:
        structure = _cell_structure(supernet)
        per_kind: dict[str, list[list[torch.Tensor]]] = {}
        for cell_type in structure:
            edges = [[] for _ in range(cell_type.num_edges)]
            for e in range(cell_type.num_edges):
                for ops in supernet.candidate_ops(cell_type.name, e):  # one per cell, in depth order
                    convs = [m.weight for op in ops for m in op.modules()
                             if isinstance(m, nn.modules.conv._ConvNd)]
                    edges[e].extend(convs or [p for op in ops for p in op.parameters()])
            if any(supernet.candidate_ops(cell_type.name, 0)):
                per_kind[cell_type.name] = edges
        self._tensors: dict[str, list[torch.Tensor]] = {}
        self._index: dict[str, torch.Tensor] = {}
        self._counts: dict[str, torch.Tensor] = {}
        for kind, edges in per_kind.items():
            flat = [p for params in edges for p in params]
            index = [e for e, params in enumerate(edges) for _ in params]
            counts = [float(sum(p.numel() for p in params)) for params in edges]
            self._tensors[kind] = flat
            self._index[kind] = torch.tensor(index, dtype=torch.long)
            self._counts[kind] = torch.tensor(counts)

    @property
    def kinds(self) -> list[str]:
        return list(self._tensors)

    def __call__(self) -> dict[str, torch.Tensor]:
        out = {}
        with torch.no_grad():
            for kind, tensors in self._tensors.items():
                counts = self._counts[kind]
                if not tensors:
                    out[kind] = torch.zeros(len(counts))
                    continue
                device = tensors[0].device
                # one fused call for the hundreds of small tensors of a supernet
                sq = torch.stack(torch._foreach_norm([t.detach() for t in tensors])).float() ** 2
                sums = torch.zeros(len(counts), device=device).index_add_(
                    0, self._index[kind].to(device), sq)
                out[kind] = sums / counts.to(device).clamp_min(1.0)
        return out


def arch_parameter_kinds(supernet: Supernet, params: Sequence[nn.Parameter]) -> list[str | None]:
    """The cell type each architecture parameter has one row per edge of (from
    `Supernet.cell_arch_parameters`), or None for a parameter that is not decoupled."""
    _cell_structure(supernet)
    kind_of = {id(p): kind for kind, ps in supernet.cell_arch_parameters().items() for p in ps}
    return [kind_of.get(id(p)) for p in params]


def _cell_structure(supernet: Supernet) -> CellStructure:
    try:
        return supernet.cell_structure()
    except NotImplementedError as exc:
        raise ValueError(f"decoupled optimization ranks the edges of a cell-based supernet: "
                         f"{exc}") from exc
