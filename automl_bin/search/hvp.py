"""Hessian-vector products of a scalar loss w.r.t. the architecture tensors (DCP-NAS T.P.).

DCP-NAS's tangent term needs ``H v`` with ``H = ∇²_α L`` the Hessian **of the minimised loss**
``L`` (for the Child: ``L = KL(p_P ‖ p_C)``, i.e. ``−G`` of the book; the sign convention of
docs/algorithms.md §Objective and gradients) and ``v`` a list of tensors shaped like the α
tensors. Three ways:

- `exact_hvp` / `exact_hvp_from_grads`: double backward. ``g = ∇_α L`` built with
  ``create_graph=True``, then ``Hv = ∇_α (gᵀ v)`` with ``v`` held constant. Exact (for the
  surrogate gradients of straight-through signs), ≈ 2.3–3× a backward pass, keeps the graph.
- `finite_diff_hvp`: central differences of the gradient along ``v``,
  ``Hv ≈ (g(α + εv) − g(α − εv)) / 2ε`` with ``ε = eps/‖v‖`` (DARTS: eps = 0.01). Two extra
  gradient evaluations, no graph. Only trustworthy on smooth losses: on ReLU/max-pool/sign
  supernets it is uncorrelated with the exact product (environment notes); the parameters are
  restored bit-exactly afterwards.
- `gauss_newton_hvp`: the true Gauss-Newton product ``Jᵀ H_out J v`` (``J = ∂logits/∂α``,
  ``H_out`` the Hessian of the loss w.r.t. the logits, `softmax_output_hvp` for CE/KL) by two
  vector-Jacobian products (the second through a dummy cotangent gives ``J v``), no dense matrix.
- `ggn_hvp`: the empirical Fisher / Gauss-Newton approximation ``H ≈ (1/m) Σ_c g_c g_cᵀ`` of the
  Hessian of the minimised loss (Fisher identity, book Eq. 4.36–4.41), so
  ``Hv ≈ (1/m) Σ_c g_c (g_cᵀ v)``. ``g_c = ∇_α L_c`` are loss gradients (minimisation
  convention); the outer product does not depend on the sign of ``g_c``, and the matrix is
  positive semi-definite (``vᵀHv = (1/m) Σ_c (g_cᵀ v)² ≥ 0``), so ``2λ·Hv`` with ``v = g − t`` is a
  descent direction of ``λ‖g − t‖²``. With ``m = 1`` and the batch gradient (``rank1``) it costs a
  dot product, but that is a rescaled gradient: ``g + 2λ·g(gᵀv) = (1 + 2λ·gᵀv)·g``, which Adam
  undoes. The per-sample form (`automl_bin.search.per_sample`) is the book's; `chunk_gradients` gives the ``m`` micro-batch gradients (``microbatch``) at the
  cost of ``m`` α-only backward passes.

Straight-through signs: a 1-bit supernet's α gradient ``g`` is a *surrogate* gradient, not the
gradient of any function, so its Jacobian ``J = ∂g/∂α`` is not symmetric (≈1% on a tiny XNOR
supernet). Double backward gives ``Jᵀv``, which is exactly what the chain rule of the tangent
constraint needs (``∇_α D(g(α)) = Jᵀ ∇_g D``); finite differences give ``Jv`` (the directional
derivative of ``g``); the GGN is symmetric by construction. On real-valued smooth losses all
three estimate the same ``Hv``.

Every function takes and returns lists of tensors in the order of ``params``. Tensors that the
loss does not depend on get zero gradients. No plugin imports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["exact_hvp", "exact_hvp_from_grads", "grads_with_graph", "finite_diff_hvp", "ggn_hvp",
           "chunk_gradients", "gauss_newton_hvp", "softmax_output_hvp", "frozen_batchnorm_stats",
           "dot", "norm"]

Tensors = Sequence[torch.Tensor]


def dot(a: Tensors, b: Tensors) -> torch.Tensor:
    """``Σ_i ⟨a_i, b_i⟩`` over lists of tensors (one scalar)."""
    return sum((x * y).sum() for x, y in zip(a, b))  # type: ignore[return-value]


def norm(v: Tensors) -> torch.Tensor:
    """Euclidean norm of the concatenation of ``v``."""
    return torch.sqrt(sum((x * x).sum() for x in v))  # type: ignore[arg-type]


def _zeros_for_none(grads: Sequence[torch.Tensor | None], params: Tensors) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def grads_with_graph(loss: torch.Tensor, params: Tensors) -> list[torch.Tensor]:
    """``∇_params loss`` with ``create_graph=True`` (the input of `exact_hvp_from_grads`)."""
    grads = torch.autograd.grad(loss, list(params), create_graph=True, allow_unused=True)
    return _zeros_for_none(grads, params)


def exact_hvp_from_grads(grads: Tensors, params: Tensors, v: Tensors, *,
                         retain_graph: bool = False) -> list[torch.Tensor]:
    """``H v = ∇_params (gradsᵀ v)`` for ``grads`` built with ``create_graph=True``.

    ``v`` is treated as a constant (detached). Components of ``grads`` that carry no graph (the
    loss is linear in that tensor) contribute nothing.
    """
    pairs = [(g, vi.detach()) for g, vi in zip(grads, v) if g.requires_grad]
    if not pairs:
        return [torch.zeros_like(p) for p in params]
    out = torch.autograd.grad([g for g, _ in pairs], list(params),
                              grad_outputs=[vi for _, vi in pairs],
                              retain_graph=retain_graph, allow_unused=True)
    return [h.detach() for h in _zeros_for_none(out, params)]


def exact_hvp(loss: torch.Tensor, params: Tensors, v: Tensors) -> list[torch.Tensor]:
    """``∇²_params loss · v`` by double backward."""
    return exact_hvp_from_grads(grads_with_graph(loss, params), params, v)


def finite_diff_hvp(grad_fn: Callable[[], Sequence[torch.Tensor]], params: Tensors, v: Tensors,
                    eps: float = 0.01, *, wrt: Tensors | None = None) -> list[torch.Tensor]:
    """Central difference ``(g(p + εv) − g(p − εv)) / 2ε``, ``ε = eps/‖v‖``.

    :param grad_fn: evaluates ``∇_params L`` (or ``∇_wrt L``) at the current values of
        ``params`` (it is called twice, with ``params`` perturbed in place; it must not step any
        optimizer).
    :param params: the tensors to perturb (leaf parameters), restored bit-exactly afterwards.
    :param wrt: the tensors ``grad_fn`` differentiates, when not ``params``: the mixed product
        ``∇²_{wrt,params} L · v`` (DARTS' second-order term perturbs w and differentiates α).
    :return: the product, shaped like ``wrt`` (default ``params``); zeros when ``v`` is zero.
    """
    params = list(params)
    size = float(norm([x.detach() for x in v]))
    if size == 0.0:
        return [torch.zeros_like(p) for p in (params if wrt is None else wrt)]
    step = eps / size
    backup = [p.detach().clone() for p in params]

    def at(sign: float) -> list[torch.Tensor]:
        with torch.no_grad():
            for p, b, d in zip(params, backup, v):
                p.copy_(b + sign * step * d)
        return [g.detach() for g in grad_fn()]

    try:
        plus, minus = at(1.0), at(-1.0)
    finally:  # p + εv − εv is not exact in floating point: restore the saved values
        with torch.no_grad():
            for p, b in zip(params, backup):
                p.copy_(b)
    return [(a - b) / (2 * step) for a, b in zip(plus, minus)]


def ggn_hvp(grad_samples: Sequence[Tensors], v: Tensors) -> list[torch.Tensor]:
    """``(1/m) Σ_c g_c (g_cᵀ v)`` for ``m`` gradient samples ``g_c`` (each a list of tensors).

    ``m = 1`` with the batch gradient is the rank-1 GGN; micro-batch gradients
    (`chunk_gradients`) give the ``microbatch`` estimate. Positive semi-definite by construction.
    """
    if not grad_samples:
        raise ValueError("ggn_hvp needs at least one gradient sample")
    m = len(grad_samples)
    out = [torch.zeros_like(x) for x in v]
    for g in grad_samples:
        coeff = dot(g, v)
        for o, gi in zip(out, g):
            o.add_(gi.detach() * coeff)
    return [o / m for o in out]


def chunk_gradients(loss_of_chunk: Callable[[int, int], torch.Tensor], n: int, params: Tensors,
                    chunks: int) -> list[list[torch.Tensor]]:
    """Gradients ``∇_params L_c`` of ``chunks`` contiguous micro-batches of a batch of ``n``.

    :param loss_of_chunk: ``(start, stop) -> loss`` of samples ``start:stop`` (a mean over them).
    :return: one gradient list per non-empty chunk (``min(chunks, n)`` of them).
    """
    chunks = max(1, min(chunks, n))
    bounds = [round(i * n / chunks) for i in range(chunks + 1)]
    out = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop <= start:
            continue
        loss = loss_of_chunk(start, stop)
        grads = torch.autograd.grad(loss, list(params), allow_unused=True)
        out.append([g.detach() for g in _zeros_for_none(grads, params)])
    return out


def softmax_output_hvp(logits: torch.Tensor, u: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale·(diag(q) − q qᵀ) u`` per sample, ``q = softmax(logits)``: the Hessian of CE (or of
    KL to a fixed target) w.r.t. the logits times ``u``; ``scale = 1/B`` for a batch mean."""
    q = torch.softmax(logits.detach(), dim=1)
    return scale * (q * u - q * (q * u).sum(dim=1, keepdim=True))


def gauss_newton_hvp(logits: torch.Tensor, params: Tensors, v: Tensors,
                     output_hvp: Callable[[torch.Tensor], torch.Tensor], *,
                     retain_graph: bool = False) -> list[torch.Tensor]:
    """``Jᵀ H_out J v`` with ``J = ∂logits/∂params`` and ``output_hvp(u) = H_out u``.

    ``J v`` comes from differentiating ``Jᵀ u`` (linear in a dummy ``u``) w.r.t. ``u``; the
    graph of ``logits`` must still exist (kept until the last product unless ``retain_graph``).
    """
    params = list(params)
    u = torch.zeros_like(logits, requires_grad=True)
    jtu = torch.autograd.grad(logits, params, grad_outputs=u, create_graph=True,
                              allow_unused=True)
    pairs = [(a, vi.detach()) for a, vi in zip(jtu, v) if a is not None and a.requires_grad]
    if not pairs:
        return [torch.zeros_like(p) for p in params]
    jv = torch.autograd.grad([a for a, _ in pairs], u, grad_outputs=[vi for _, vi in pairs])[0]
    out = torch.autograd.grad(logits, params, grad_outputs=output_hvp(jv.detach()),
                              allow_unused=True, retain_graph=retain_graph)
    return [h.detach() for h in _zeros_for_none(out, params)]


@contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm's running statistics on exit.

    Extra forward passes in training mode (finite differences, micro-batches, the reference
    computations of tests) would otherwise move the running mean/variance as if they were
    training steps.
    """
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            saved.append((module, [None if b is None else b.detach().clone() for b in
                                   (module.running_mean, module.running_var,
                                    module.num_batches_tracked)]))
    try:
        yield
    finally:
        with torch.no_grad():
            for module, (mean, var, count) in saved:
                for buf, value in ((module.running_mean, mean), (module.running_var, var),
                                   (module.num_batches_tracked, count)):
                    if buf is not None and value is not None:
                        buf.copy_(value)
