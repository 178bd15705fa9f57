"""Per-sample architecture gradients from one backward pass (the book's Fisher/GGN).

See docs/algorithms.md §Tangent propagation (T.P.) and the GGN.

For a mixed op ``m_e(x) = Σ_j w_{e,j} o_j(x)`` with mixing weights ``w_e = f(α)`` (softmax of an α
row, or any differentiable map), the α gradient of a batch loss ``L`` splits into one
contribution per sample:

    c_x = J_f(α)ᵀ [⟨∂L/∂m_e[x], o_j(x)⟩]_j          summed over every mixed op that uses α,

and ``Σ_x c_x = ∇_α L`` exactly, also when BatchNorm in train mode couples the samples (the
coupling lives in ``∂L/∂m_e[x]``). With BN in eval mode and a batch-mean loss
``L = (1/B) Σ_x L_x``, ``B·c_x = ∇_α L_x`` is the per-sample gradient ``g_x``.

`record_mixed_ops` installs a recorder on every `MixedOp` of a model for one forward pass; after
the backward pass that computes ``∇_α L`` (run it with ``retain_graph=True`` so the small
``α → w`` graph survives), `MixedOpRecording.contributions` returns ``c_x`` for every α tensor as
one ``(B, *α.shape)`` tensor, through a single batched vector-Jacobian product of ``α → w``. No
vmap over the network and no B backward passes: the op outputs are the tensors autograd keeps
for the weights' gradient anyway.

`fisher_hvp` forms ``H v ≈ (1/B) Σ_x g_x (g_xᵀ v)`` (the empirical Fisher, positive
semi-definite) from them. Architecture tensors that reach the loss without passing through a
mixed op's weights (e.g. PC-DARTS edge logits, which scale the mixed output) get no per-sample
contribution and so no curvature here. No plugin imports.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import attrs
import torch
from torch import nn

from automl_bin.nn.mixed_op import MixedOp

__all__ = ["MixedOpRecording", "record_mixed_ops", "fisher_hvp"]

Tensors = Sequence[torch.Tensor]


@attrs.define(eq=False)
class _Call:
    weights: torch.Tensor
    outputs: list[torch.Tensor | None]
    grad: torch.Tensor | None = None

    def keep_grad(self, grad: torch.Tensor) -> None:
        self.grad = grad.detach()

    def scores(self) -> torch.Tensor:
        """``u[x, j] = ⟨∂L/∂m[x], o_j(x)⟩`` (zero for ops that did not run)."""
        assert self.grad is not None
        b = self.grad.shape[0]
        flat = self.grad.reshape(b, -1)
        cols = [torch.zeros(b, dtype=flat.dtype, device=flat.device) if o is None
                else (flat * o.reshape(b, -1)).sum(1) for o in self.outputs]
        return torch.stack(cols, dim=1)


@attrs.define(eq=False)
class MixedOpRecording:
    """The mixed-op calls of one forward pass (filled by the recorders)."""

    calls: list[_Call] = attrs.field(factory=list)

    def __call__(self, weights: torch.Tensor, outputs: Sequence[torch.Tensor | None],
                 mixed: torch.Tensor) -> None:
        call = _Call(weights, [None if o is None else o.detach() for o in outputs])
        mixed.register_hook(call.keep_grad)
        self.calls.append(call)

    def contributions(self, params: Tensors) -> list[torch.Tensor]:
        """``c_x`` per tensor of ``params``: ``(B, *p.shape)``; ``Σ_x c_x`` = the α gradient of
        the loss whose backward ran (module doc). Zeros for a tensor no recorded call uses."""
        used = [c for c in self.calls if c.grad is not None]
        params = list(params)
        if not used:
            raise RuntimeError("no recorded mixed-op output received a gradient: run the "
                               "backward pass of the loss inside record_mixed_ops first")
        batch = used[0].grad.shape[0]  # type: ignore[union-attr]
        scores = [c.scores() for c in used]
        out = torch.autograd.grad([c.weights for c in used], params, grad_outputs=scores,
                                  is_grads_batched=True, allow_unused=True, retain_graph=True)
        return [torch.zeros(batch, *p.shape, dtype=p.dtype, device=p.device) if o is None
                else o.detach() for o, p in zip(out, params)]


@contextmanager
def record_mixed_ops(model: nn.Module) -> Iterator[MixedOpRecording]:
    """Record every `MixedOp` call of ``model`` inside the block (see module doc)."""
    recording = MixedOpRecording()
    mixed = [m for m in model.modules() if isinstance(m, MixedOp)]
    for m in mixed:
        m.recorder = recording
    try:
        yield recording
    finally:
        for m in mixed:
            m.recorder = None


def fisher_hvp(contributions: Tensors, v: Tensors) -> list[torch.Tensor]:
    """``(1/B) Σ_x g_x (g_xᵀ v)`` with ``g_x = B·c_x`` (the per-sample gradients of a batch-mean
    loss), from the ``(B, ...)`` contributions of `MixedOpRecording.contributions`."""
    batch = contributions[0].shape[0]
    coeff = sum((c.reshape(batch, -1) @ vi.reshape(-1).to(c.dtype))
                for c, vi in zip(contributions, v))
    return [batch * torch.tensordot(coeff, c, dims=1) for c in contributions]  # type: ignore[arg-type]
