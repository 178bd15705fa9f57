"""The DARTS bilevel step (docs/algorithms.md §DARTS bilevel step), for every strategy.

Per mini-batch pair (train, val):

1. α step (Adam): first order ``g = ∇_α L_val(w, α)``; second order (``unrolled``) evaluates
   ``L_val`` at the virtual weights ``w' = w − ξ(μ·buf + ∇_w L_train + wd·w)`` and subtracts
   ``ξ·HVP`` computed by central finite differences with ``ε = 0.01/‖v‖``
   (`automl_bin.search.hvp.finite_diff_hvp`) [CODE: quark0/darts cnn/architect.py].
2. w step (SGD with gradient clipping) on ``L_train(w, α)``.

Strategies that change the α gradient (e.g. DCP-NAS's tangent term) call `arch_gradients`,
modify the result, and pass it to `apply_arch_gradients`.

Data parallel (``dist`` given): every gradient above (∇_w, ∇_α, the virtual step's direction,
both finite-difference gradients) is averaged over ranks before it is used, so each rank takes
the step the single process takes on the whole batch; see `automl_bin.search.data_parallel`.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch

from automl_bin.interfaces.dist_context import DistContext
from automl_bin.interfaces.supernet import Supernet
from automl_bin.search import data_parallel
from automl_bin.search.hvp import finite_diff_hvp
from automl_bin.training import LossFn, clip_and_step, cross_entropy_loss

__all__ = ["ArchConfig", "BilevelOptimizer"]


@attrs.frozen(kw_only=True)
class ArchConfig:
    """Adam on the architecture parameters (DARTS: lr 3e-4, betas (0.5, 0.999), wd 1e-3)."""

    lr: float = 3e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-3


class BilevelOptimizer:
    """Owns the α optimizer and performs the two halves of a DARTS search step."""

    def __init__(self, supernet: Supernet, w_optimizer: torch.optim.SGD, arch: ArchConfig,
                 *, order: int = 1, grad_clip: float = 5.0, fd_eps: float = 0.01,
                 train_loss: LossFn = cross_entropy_loss, val_loss: LossFn = cross_entropy_loss,
                 dist: DistContext | None = None) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        self.net = supernet
        self.w_opt = w_optimizer
        self.order = order
        self.grad_clip = grad_clip
        self.fd_eps = fd_eps
        self.train_loss = train_loss
        self.val_loss = val_loss
        self.dist = dist
        data_parallel.broadcast_module(supernet, dist)
        self.alphas = list(supernet.arch_parameters())
        self.weights = list(supernet.weight_parameters())
        self.a_opt = torch.optim.Adam(self.alphas, lr=arch.lr, betas=(arch.beta1, arch.beta2),
                                      weight_decay=arch.weight_decay)

    # -- weight half ----------------------------------------------------------------------
    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step on ``L_train``; returns ``(loss, logits)`` (detached)."""
        self.w_opt.zero_grad(set_to_none=True)
        loss, logits = self.train_loss(self.net, x, y)
        loss.backward()
        for a in self.alphas:  # the weight step must not move α
            a.grad = None
        data_parallel.all_reduce_grads(self.weights, self.dist, len(x))
        clip_and_step(self.weights, self.w_opt, self.grad_clip)
        data_parallel.sync_buffers(self.net, self.dist)
        return loss.detach(), logits.detach()

    # -- architecture half -----------------------------------------------------------------
    def arch_gradients(self, x_train: torch.Tensor, y_train: torch.Tensor,
                       x_val: torch.Tensor, y_val: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(∇_α, L_val)`` by first or second order DARTS, without stepping."""
        if self.order == 1:
            loss, _ = self.val_loss(self.net, x_val, y_val)
            grads = torch.autograd.grad(loss, self.alphas)
            return self.mean_over_ranks([g.detach() for g in grads], len(x_val)), loss.detach()
        return self._unrolled_gradients(x_train, y_train, x_val, y_val)

    def mean_over_ranks(self, tensors: list[torch.Tensor], count: int) -> list[torch.Tensor]:
        """``tensors`` averaged over ranks (unchanged in a single process)."""
        if self.dist is None:
            return tensors
        return data_parallel.reduce_mean(tensors, count, self.dist)

    def apply_arch_gradients(self, grads: Sequence[torch.Tensor]) -> None:
        self.a_opt.zero_grad(set_to_none=True)
        for a, g in zip(self.alphas, grads):
            a.grad = g.clone()
        self.a_opt.step()

    def arch_step(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                  y_val: torch.Tensor) -> torch.Tensor:
        grads, loss = self.arch_gradients(x_train, y_train, x_val, y_val)
        self.apply_arch_gradients(grads)
        return loss

    def _virtual_direction(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """``μ·buf + ∇_w L_train + wd·w`` — the SGD step direction including momentum and wd."""
        loss, _ = self.train_loss(self.net, x, y)
        grads = torch.autograd.grad(loss, self.weights, allow_unused=True)
        group = self.w_opt.param_groups[0]
        mom, wd = group["momentum"], group["weight_decay"]
        grads = self.mean_over_ranks([torch.zeros_like(w) if g is None else g
                            for w, g in zip(self.weights, grads)], len(x))
        out = []
        for w, g in zip(self.weights, grads):
            buf = self.w_opt.state.get(w, {}).get("momentum_buffer")
            d = g + wd * w.detach()
            if buf is not None:
                d = d + mom * buf
            out.append(d.detach())
        return out

    def _unrolled_gradients(self, x_train: torch.Tensor, y_train: torch.Tensor,
                            x_val: torch.Tensor, y_val: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        xi = self.w_opt.param_groups[0]["lr"]
        backup = [w.detach().clone() for w in self.weights]
        direction = self._virtual_direction(x_train, y_train)
        with torch.no_grad():
            for w, d in zip(self.weights, direction):
                w.sub_(xi * d)
        loss, _ = self.val_loss(self.net, x_val, y_val)
        grads = torch.autograd.grad(loss, self.alphas + self.weights, allow_unused=True)
        grads = self.mean_over_ranks([torch.zeros_like(p) if g is None else g.detach()
                            for p, g in zip(self.alphas + self.weights, grads)], len(x_val))
        d_alpha, v = grads[: len(self.alphas)], grads[len(self.alphas):]
        with torch.no_grad():
            for w, b in zip(self.weights, backup):
                w.copy_(b)
        hvp = self._finite_difference_hvp(v, x_train, y_train)
        return [g - xi * h for g, h in zip(d_alpha, hvp)], loss.detach()

    def _finite_difference_hvp(self, v: Sequence[torch.Tensor], x: torch.Tensor,
                               y: torch.Tensor) -> list[torch.Tensor]:
        """``∇²_{α,w} L_train · v`` by central differences of ``∇_α L_train`` at ``w ± εv``."""

        def grad_alpha() -> list[torch.Tensor]:
            loss, _ = self.train_loss(self.net, x, y)
            grads = torch.autograd.grad(loss, self.alphas)
            return self.mean_over_ranks([t.detach() for t in grads], len(x))

        return finite_diff_hvp(grad_alpha, self.weights, v, self.fd_eps, wrt=self.alphas)
