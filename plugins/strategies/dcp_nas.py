"""The ``dcp_nas`` strategy: Discrepant Child-Parent NAS (IJCV'23; book §4.4, Alg. 10).

See docs/algorithms.md §DCP-NAS.

Two supernets over the same cell space and supernet options (``partial_k``): the **Parent** is
real-valued (the ``none`` binarizer, built with ``env.create``), the **Child** uses the recipe's
1-bit binarizer. Both are searched by the DARTS first-order bilevel step
(`automl_bin.search.bilevel.BilevelOptimizer`, one per supernet):

- Parent: weights by SGD on CE, α by Adam on ``∇_α CE`` (the val batch).
- Child: weights by SGD (no weight decay by default) on
  ``KL(p_P ‖ p_C) + μ·L_R + child_ce_weight·CE`` (``p_P`` = softmax of the Parent in eval
  mode, no grad; ``L_R`` = mean over binarized convs of ``MSE(ŵ, β∘sign ŵ)``,
  the Child binarizer's `Binarizer.reconstruction_error`);
  α̂ by Adam on the modified gradient (book Eq. 4.33)

      g_total = g + 2λ·H·v,   g = ∇_α̂ L_C,   v = ½∇_g D(g, t)   (v = g − t for D = ‖g − t‖²_F)

  with ``L_C = KL(p_P ‖ p_C) (+ child_ce_weight·CE)`` on the val batch, ``t`` the **tangent
  direction** (the Parent's ``∇_α CE`` on the same val batch, Parent in eval mode, sharing the
  forward that gives ``p_P``; or an EMA of the Parent's α gradients of its own search,
  ``tangent_mode = "ema"``), ``H`` the Hessian of ``L_C`` w.r.t. α̂ by ``hessian``: ``ggn``
  (``rank1``: ``g(gᵀv)``; ``microbatch``: ``(1/m)Σ g_c(g_cᵀv)``), ``exact`` (double backward) or
  ``finite_diff`` (central differences on α̂). Mechanisms: `automl_bin.search.tangent`,
  `automl_bin.search.hvp`, `automl_bin.search.decoupled`.
- Decoupled optimization (``decoupled``, both supernets, each its own ψ̃): after each Adam step
  the edges with the larger weight norm are backtracked, ``α ← α + η·ψ̃⊙α_prev``,
  ``η = arch_lr × weight lr``, and ψ̃ learns from the next α gradient (docs/algorithms.md §Decoupled optimisation (D.O.)).

Schedule (``schedule``):

- ``alternate`` (Alg. 10): ``warmup_epochs`` of weights only (both supernets, no α step), then
  ``rounds`` × (``parent_epochs`` Parent epochs, ``child_epochs`` Child epochs). Architectures are
  inherited both ways: ``α ← α̂`` at the start of every Parent phase but the first, ``α̂ ← α`` at
  the start of every Child phase (α̂ = α at the start). ``inherit_weights`` also copies the
  Parent's weights into the Child once, at the first Child phase. The runner epoch is one phase
  epoch; ``num_epochs = warmup + rounds·(parent_epochs + child_epochs)``.
- ``interleaved``: after the warm-up, every mini-batch runs a Parent step and then a Child step on
  one shared architecture (α ← α̂ before the Parent's step, α̂ ← α before the Child's): the
  tangent is always fresh. ``num_epochs = warmup + rounds·child_epochs`` (the Child takes as many
  steps as under ``alternate``).

Each supernet's weight lr follows a cosine over the epochs that train it. Metric ``phase``:
−1 warm-up, 0 Parent, 1 Child, 2 interleaved. ``derive()`` applies the DARTS rule to the Child's
α̂. Torch is imported inside functions only, keeping ``automl-bin check`` fast.

Choices the sources leave open ([INFER], docs/algorithms.md §Search loop), as implemented:

- The same-batch tangent and ``p_P`` come from one Parent forward in eval mode (running BN
  statistics, nothing updated); the EMA tangent averages the Parent's own first-order α gradients
  (train mode) of its α steps, and is seeded from a same-batch tangent if no Parent α step ran.
- λ = 0 (or ``tangent = false``) skips the H·v product; with ``tangent`` on, ``t`` and
  ``D(g, t)`` are still computed and logged (``tangent_distance``).
- D.O. learns ψ̃ from the α gradient actually applied (``g + 2λ·H·v`` for the Child). Inheriting
  an architecture (alternate schedule) drops the pending ψ̃ gradient of the overwritten side;
  under ``interleaved`` it is kept (the gradient at the shared α stands in for ``∂L/∂α_used``).
  With the book's η and the DARTS lrs ``η = 3e-4 × 0.025 ≈ 7.5e-6`` and α ≈ 1e-3, so ψ̃ stays tiny and D.O.
  is close to plain DARTS unless ``psi_lr`` or the lrs are raised.
- The Child's extra passes (finite differences, micro-batches) leave its BN running statistics as
  a single α step would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Literal

import attrs

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin.interfaces import CELLS, Binarizer, SearchEnv, SearchSpace
from automl_bin.search.one_shot import EpochPlan, OneShotStrategy
from automl_bin.search.optimizer_keys import BilevelKeys

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["DcpNasStrategy", "DcpNasConfig", "ParentKL", "HESSIAN_CODES",
           "PHASE_WARMUP", "PHASE_PARENT", "PHASE_CHILD", "PHASE_INTERLEAVED"]

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)

#: ``final_metrics()["hessian"]``
HESSIAN_CODES = {"ggn": 0, "exact": 1, "finite_diff": 2}
GGN_MODES = ("per_sample", "gauss_newton", "microbatch", "rank1")
#: an effect below this fraction of the step it modifies is reported as inert
INERT = 1e-3
PHASE_WARMUP, PHASE_PARENT, PHASE_CHILD, PHASE_INTERLEAVED = -1, 0, 1, 2


#: defaults measured to make T.P. and D.O. act on the shipped CPU recipes (docs/algorithms.md)
LAMBDA_DEFAULT = 3.0
TANGENT_MAX_RATIO_DEFAULT = 1.0
PSI_INIT_DEFAULT = 0.01
PSI_LR_DEFAULT = 0.1


def _one_of(*values: Any) -> Any:
    return attrs.validators.in_(values)


@attrs.frozen(kw_only=True)
class DcpNasConfig(BilevelKeys):
    # lr, lr_min, momentum, weight_decay (the real-valued Parent's), grad_clip, arch_* (Adam on
    # α and α̂): see optimizer_keys
    # -- schedule ---------------------------------------------------------------------------------
    #: "alternate" (Alg. 10: Parent phase, Child phase, per round) or "interleaved" (both per batch)
    schedule: Literal["alternate", "interleaved"] = attrs.field(
        default="alternate", validator=_one_of("alternate", "interleaved"))
    #: Parent/Child alternations (default 5 [INFER])
    rounds: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    #: epochs of each Parent phase (0 = the Parent is only warmed up, then frozen)
    parent_epochs: int = attrs.field(default=5, validator=_ge0)
    #: epochs of each Child phase
    child_epochs: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    #: epochs of weight training (both supernets) before any α step (PC-DARTS convention: 15)
    warmup_epochs: int = attrs.field(default=15, validator=_ge0)
    #: stop each epoch after this many steps (0 = the whole training split)
    max_steps: int = attrs.field(default=0, validator=_ge0)
    #: score Parent and Child on at most this many validation batches per epoch (0 = all)
    eval_batches: int = attrs.field(default=0, validator=_ge0)
    # -- tangent propagation ----------------------------------------------------------------------
    #: T.P.: add 2λ·H·v to the Child's α gradient
    tangent: bool = True
    #: λ of the tangent constraint (book: 1e-3 at ImageNet scale; see docs/algorithms for the
    #: default, chosen so that ‖2λ·H·v‖/‖g‖ lies in [0.05, 1] on the shipped recipes)
    lambda_tangent: float = attrs.field(default=LAMBDA_DEFAULT, validator=_ge0)
    #: cap ‖2λ·H·v‖ at this multiple of ‖g‖ (0 = no cap): the per-sample Fisher's scale varies
    #: by ~100× across seeds and epochs, so a λ that acts early would otherwise swamp g later
    tangent_max_ratio: float = attrs.field(default=TANGENT_MAX_RATIO_DEFAULT, validator=_ge0)
    #: D(g, t): "fro" ‖g−t‖², "l1" ‖g−t‖₁, "cosine" 1 − cos(g, t)
    tangent_distance: Literal["fro", "l1", "cosine"] = attrs.field(
        default="fro", validator=_one_of("fro", "l1", "cosine"))
    #: "same_batch": the Parent's α gradient on the Child's val batch; "ema": an EMA of the
    #: Parent's α gradients of its own search steps
    tangent_mode: Literal["same_batch", "ema"] = attrs.field(
        default="same_batch", validator=_one_of("same_batch", "ema"))
    #: decay of the EMA tangent
    tangent_ema: float = attrs.field(default=0.9, validator=[_ge0, attrs.validators.lt(1)])
    #: how H·v is formed: "ggn" (Fisher/GGN), "exact" (double backward), "finite_diff"
    hessian: Literal["ggn", "exact", "finite_diff"] = attrs.field(
        default="ggn", validator=_one_of(*HESSIAN_CODES))
    #: GGN estimate: "per_sample" (the book's E_x[g_x g_xᵀ], per-sample α gradients from one
    #: backward pass), "gauss_newton" (the true Jᵀ H_out J, two extra vector-Jacobian
    #: products), "microbatch" (ggn_microbatches chunk gradients) or "rank1" (the batch
    #: gradient: g(gᵀv) only rescales g, which Adam undoes; kept for comparison)
    ggn_mode: Literal["per_sample", "gauss_newton", "microbatch", "rank1"] = attrs.field(
        default="per_sample", validator=_one_of(*GGN_MODES))
    ggn_microbatches: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: finite-difference step on α̂, scaled by 1/‖v‖
    fd_eps: float = attrs.field(default=0.01, validator=_gt0)
    # -- Child loss -------------------------------------------------------------------------------
    #: μ of the reconstruction term μ·L_R in the Child's weight loss (book: 0.2)
    mu_rec: float = attrs.field(default=0.2, validator=_ge0)
    #: weight of CE(Child, y) added to the KL (default 0: KL only, as the DCP-NAS retraining code)
    child_ce_weight: float = attrs.field(default=0.0, validator=_ge0)
    #: copy the Parent's weights into the Child at the first Child phase
    inherit_weights: bool = False
    # -- decoupled optimization -------------------------------------------------------------------
    #: D.O.: backtrack the large-norm edges by η·ψ̃⊙α_prev and learn ψ̃
    decoupled: bool = True
    #: τ = ⌊E·tau_ratio⌋: edges ranked ≥ τ by weight norm (ascending) are backtracked
    tau_ratio: float = attrs.field(default=0.5, validator=[_ge0, attrs.validators.le(1)])
    #: initial ψ̃ (book: 0, where the first backtracks are no-ops and ψ̃ never grows)
    psi_init: float = attrs.field(default=PSI_INIT_DEFAULT, validator=_ge0)
    #: η of the backtrack α̃ = α + η·ψ̃⊙α_prev: "unit" (η = 1, so ψ̃ is the fraction of α_prev
    #: added back per step) or "lr_product" (the book's η = arch lr × weight lr ≈ 1e-5, at
    #: which the backtrack is numerically inert unless ψ̃ is huge)
    eta_mode: Literal["unit", "lr_product"] = attrs.field(
        default="unit", validator=_one_of("unit", "lr_product"))
    #: SGD lr of ψ̃ (Eq. 4.51)
    psi_lr: float = attrs.field(default=PSI_LR_DEFAULT, validator=_ge0)
    # -- supernets and optimizers -----------------------------------------------------------------
    #: PC-DARTS partial channels for both supernets (1 = off; 4 at paper scale)
    partial_k: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    #: weight decay of the Child's latent weights (default 0 [INFER])
    child_weight_decay: float = attrs.field(default=0.0, validator=_ge0)


# -- losses -------------------------------------------------------------------------------------
@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class ParentKL:
    """A bilevel loss ``(model, x, y) -> (loss, logits)`` distilling from the Parent:

    ``KL(p_P ‖ p_model)`` (batch mean, ``p_P = softmax(Parent(x))`` in eval mode without grad)
    ``+ ce_weight·CE(model(x), y) + mu_rec·L_R(model)``. ``last`` holds the detached terms of
    the last call (``kl``, ``ce``, ``recon``).
    """

    def __init__(self, parent: nn.Module, ce_weight: float = 0.0, mu_rec: float = 0.0,
                 reconstruction: Callable[[nn.Module], torch.Tensor | None] | None = None
                 ) -> None:
        self.parent = parent
        self.ce_weight = ce_weight
        self.mu_rec = mu_rec
        #: ``L_R`` of a model: the Child binarizer's `Binarizer.reconstruction_error`
        self.reconstruction = reconstruction
        self.last: dict[str, torch.Tensor] = {}

    def teacher_probs(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad(), _eval_mode(self.parent):
            return torch.softmax(self.parent(x), dim=1)

    def loss_from_probs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch.nn.functional as F

        logits = model(x)
        kl = F.kl_div(F.log_softmax(logits, dim=1), probs, reduction="batchmean")
        loss = kl
        last = {"kl": kl.detach()}
        if self.ce_weight > 0:
            ce = F.cross_entropy(logits, y)
            loss = loss + self.ce_weight * ce
            last["ce"] = ce.detach()
        if self.mu_rec > 0 and self.reconstruction is not None:
            rec = self.reconstruction(model)
            if rec is not None:
                loss = loss + self.mu_rec * rec
                last["recon"] = rec.detach()
        self.last = last
        return loss, logits

    def __call__(self, model: nn.Module, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss_from_probs(model, x, y, self.teacher_probs(x))


# -- the strategy -------------------------------------------------------------------------------
class DcpNasStrategy(OneShotStrategy):
    """DCP-NAS: a real Parent and a 1-bit Child; tangent propagation, GGN, decoupled α steps."""

    Config = DcpNasConfig

    def check_compatible(self, space: SearchSpace, binarizer: Binarizer) -> str | None:
        cfg = self.config
        if not binarizer.is_binary:
            return ("its Child is the 1-bit supernet, but the binarizer is real-valued "
                    f"({binarizer.weight_bits}-bit weights); use a 1-bit binarizer such as "
                    "'xnor' or 'recon'")
        if cfg.partial_k != 1 and "partial_k" not in space.supernet_options:
            return (f"partial_k = {cfg.partial_k} needs a search space with the 'partial_k' "
                    "supernet option; set partial_k = 1")
        if cfg.decoupled and CELLS not in space.capabilities:
            return ("decoupled = true ranks the edges of a DARTS cell DAG, and the search space "
                    "has no 'nodes' setting; set decoupled = false")
        return None

    # -- setup --------------------------------------------------------------------------------
    def build(self, env: SearchEnv) -> None:
        from automl_bin.search.bilevel import BilevelOptimizer
        from automl_bin.search.decoupled import (
            DecoupledState,
            EdgeWeightNorms,
            arch_parameter_kinds,
        )
        from automl_bin.search.tangent import TangentEMA
        from automl_bin.training import make_sgd

        cfg = self.config
        problem = self.check_compatible(env.space, env.binarizer)
        if problem:
            raise ValueError(f"dcp_nas cannot run: {problem}")
        if env.create is None:
            raise ValueError("dcp_nas builds its real-valued Parent with env.create, which is "
                             "not set")
        options = {"partial_k": cfg.partial_k} if cfg.partial_k != 1 else {}
        parent_binarizer = env.create("binarizer", "none")
        self.parent = env.space.build_supernet(env.input_shape, env.num_classes, parent_binarizer,
                                               options).to(env.device)
        self.child = env.space.build_supernet(env.input_shape, env.num_classes, env.binarizer,
                                              options).to(env.device)
        arch = cfg.arch_config()
        self.parent_bl = BilevelOptimizer(
            self.parent, make_sgd(self.parent.weight_parameters(), self.sgd), arch, order=1,
            grad_clip=cfg.grad_clip, dist=env.dist)
        #: the Child's weight loss (KL + μ·L_R + ce) and α loss (KL + ce)
        self.child_train_loss = ParentKL(self.parent, cfg.child_ce_weight, cfg.mu_rec,
                                         reconstruction=env.binarizer.reconstruction_error)
        self.child_val_loss = ParentKL(self.parent, cfg.child_ce_weight)
        child_sgd = attrs.evolve(self.sgd, weight_decay=cfg.child_weight_decay)
        self.child_bl = BilevelOptimizer(
            self.child, make_sgd(self.child.weight_parameters(), child_sgd), arch, order=1,
            grad_clip=cfg.grad_clip, train_loss=self.child_train_loss,
            val_loss=self.child_val_loss, dist=env.dist)
        self._copy_arch("parent", "child")  # α̂ := α at the start (Alg. 10)
        self.psi = {"parent": DecoupledState.full_like(self.parent_bl.alphas, cfg.psi_init),
                    "child": DecoupledState.full_like(self.child_bl.alphas, cfg.psi_init)}
        #: per-epoch effect sizes: ‖2λHv‖/‖g‖, cos(total, g) per Child α step; ‖backtrack‖ and
        #: ‖Adam step‖ summed over the epoch (D.O.)
        self.effects: dict[str, list[float]] = {}
        self.warned: set[str] = set()
        self.ema = TangentEMA(decay=cfg.tangent_ema)
        self.edge_norms: dict[str, Any] = {}
        self.arch_kinds: dict[str, list[str | None]] = {}
        if cfg.decoupled:
            for who, net, bl in (("parent", self.parent, self.parent_bl),
                                 ("child", self.child, self.child_bl)):
                self.edge_norms[who] = EdgeWeightNorms(net)
                self.arch_kinds[who] = arch_parameter_kinds(net, bl.alphas)
        self.child_weights_inherited = False
        self.position: dict[str, int] = {"epoch": -1, "round": -1, "phase": PHASE_WARMUP}

    # -- schedule -----------------------------------------------------------------------------
    def num_epochs(self) -> int:
        cfg = self.config
        if cfg.schedule == "alternate":
            return cfg.warmup_epochs + cfg.rounds * (cfg.parent_epochs + cfg.child_epochs)
        return cfg.warmup_epochs + cfg.rounds * cfg.child_epochs

    def schedule_position(self, epoch: int) -> tuple[int, int, bool]:
        """``(round, phase, first epoch of the phase)`` of runner epoch ``epoch``."""
        cfg = self.config
        if epoch < cfg.warmup_epochs:
            return -1, PHASE_WARMUP, epoch == 0
        e = epoch - cfg.warmup_epochs
        if cfg.schedule == "interleaved":
            return e // cfg.child_epochs, PHASE_INTERLEAVED, e == 0
        per = cfg.parent_epochs + cfg.child_epochs
        rnd, k = divmod(e, per)
        if k < cfg.parent_epochs:
            return rnd, PHASE_PARENT, k == 0
        return rnd, PHASE_CHILD, k == cfg.parent_epochs

    def _epochs_of(self, who: str, epoch: int | None = None) -> int:
        """Epochs that train ``who``'s weights before ``epoch`` (all of them when None)."""
        cfg = self.config
        total = self.num_epochs()
        epoch = total if epoch is None else epoch
        if cfg.schedule == "interleaved" or epoch <= cfg.warmup_epochs:
            return epoch
        rnd, k = divmod(epoch - cfg.warmup_epochs, cfg.parent_epochs + cfg.child_epochs)
        if who == "parent":
            return cfg.warmup_epochs + rnd * cfg.parent_epochs + min(k, cfg.parent_epochs)
        return cfg.warmup_epochs + rnd * cfg.child_epochs + max(0, k - cfg.parent_epochs)

    # -- architecture inheritance ---------------------------------------------------------------
    def _bl(self, who: str) -> Any:
        return self.parent_bl if who == "parent" else self.child_bl

    def _copy_arch(self, src: str, dst: str, clear_pending: bool = True) -> None:
        """``dst``'s architecture parameters ← ``src``'s (α ← α̂ or α̂ ← α)."""
        import torch

        with torch.no_grad():
            for a, b in zip(self._bl(dst).alphas, self._bl(src).alphas):
                a.copy_(b)
        psi = getattr(self, "psi", None)
        if clear_pending and psi is not None:
            psi[dst].clear_pending()

    def _inherit_weights(self) -> None:
        """The Child's weights ← the Parent's, where names and shapes agree (not α)."""
        arch = {n for n, p in self.child.named_parameters()
                if any(p is a for a in self.child_bl.alphas)}
        own = self.child.state_dict()
        src = {k: v for k, v in self.parent.state_dict().items()
               if k in own and k not in arch and own[k].shape == v.shape}
        self.child.load_state_dict(src, strict=False)
        self.child_weights_inherited = True

    # -- α steps --------------------------------------------------------------------------------
    def _effect(self, key: str, value: float) -> None:
        self.effects.setdefault(key, []).append(value)

    def _apply(self, who: str, grads: list[torch.Tensor]) -> None:
        """Adam step on ``who``'s architecture, then the decoupled backtrack and ψ̃ update."""
        from automl_bin.search.decoupled import backtrack_, update_psi

        cfg = self.config
        bl = self._bl(who)
        if not cfg.decoupled:
            bl.apply_arch_gradients(grads)
            return
        state = self.psi[who]
        update_psi(state, grads, cfg.psi_lr)
        prev = [a.detach().clone() for a in bl.alphas]
        bl.apply_arch_gradients(grads)
        norms = self.edge_norms[who]()
        per_param = [None if k is None else norms.get(k) for k in self.arch_kinds[who]]
        eta = (1.0 if cfg.eta_mode == "unit"
               else cfg.arch_lr * bl.w_opt.param_groups[0]["lr"])
        back, step = backtrack_(state, bl.alphas, prev, per_param, eta, cfg.tau_ratio)
        self._effect("backtrack_norm", back)
        self._effect("adam_step_norm", step)

    def parent_arch_step(self, xt: torch.Tensor, yt: torch.Tensor, xv: torch.Tensor,
                         yv: torch.Tensor) -> torch.Tensor:
        """First-order DARTS on the Parent's CE (feeds the EMA tangent), with D.O."""
        grads, loss = self.parent_bl.arch_gradients(xt, yt, xv, yv)
        if self.config.tangent_mode == "ema":
            self.ema.update(grads)
        self._apply("parent", grads)
        return loss

    def child_arch_gradients(self, xv: torch.Tensor, yv: torch.Tensor
                             ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """The Child's α gradient ``g + 2λ·H·v`` on a val batch, without stepping.

        :return: ``(gradient, info)``; info holds ``loss`` (L_C), ``g``, and with T.P. ``t``,
            ``distance`` (D(g, t)) and, when λ > 0, ``v`` and ``hv``.
        """
        import torch

        from automl_bin.search import hvp
        from automl_bin.search import tangent as tg
        from automl_bin.search.per_sample import record_mixed_ops

        cfg = self.config
        alphas = self.child_bl.alphas
        use_tp = cfg.tangent
        t: list[torch.Tensor] | None = None
        if use_tp and (cfg.tangent_mode == "same_batch" or self.ema.value is None):
            # one Parent forward gives the tangent and p_P (eval mode: running BN statistics)
            with _eval_mode(self.parent):
                t, parent_logits, _ = tg.tangent_direction(self.parent, self.parent_bl.alphas,
                                                           xv, yv)
            t = self.parent_bl.mean_over_ranks(list(t), len(xv))  # data parallel: whole batch
            if cfg.tangent_mode == "ema":  # no Parent α step yet: seed the EMA
                self.ema.update(t)
        else:
            with torch.no_grad(), _eval_mode(self.parent):
                parent_logits = self.parent(xv)
            if use_tp:
                assert self.ema.value is not None
                t = [v.clone() for v in self.ema.value]
        probs = torch.softmax(parent_logits, dim=1)
        lam = cfg.lambda_tangent if use_tp else 0.0
        second = use_tp and lam > 0
        graph = second and cfg.hessian == "exact"
        per_sample = second and cfg.hessian == "ggn" and cfg.ggn_mode == "per_sample"
        keep = second and cfg.hessian == "ggn" and cfg.ggn_mode in ("per_sample", "gauss_newton")
        with record_mixed_ops(self.child) if per_sample else nullcontext() as recording:
            loss, logits = self.child_val_loss.loss_from_probs(self.child, xv, yv, probs)
        raw = torch.autograd.grad(loss, alphas, create_graph=graph, retain_graph=keep or graph,
                                  allow_unused=True)
        grads = [torch.zeros_like(a) if r is None else r for r, a in zip(raw, alphas)]
        # data parallel: g (and below H·v) are averaged over ranks before anything nonlinear in
        # them (the distance, its direction v), so every rank takes the single-process step
        g = self.child_bl.mean_over_ranks([x.detach() for x in grads], len(xv))
        info: dict[str, Any] = {"loss": loss.detach(), "g": g}
        if not use_tp:
            return g, info
        assert t is not None
        info["t"] = t
        info["distance"] = tg.tangent_distance(g, t, cfg.tangent_distance).detach()
        if lam == 0:
            return g, info
        v = tg.distance_direction(g, t, cfg.tangent_distance)
        hv = self.child_bl.mean_over_ranks(
            self._hvp(grads, g, v, xv, yv, probs, recording, logits), len(xv))
        g_norm = float(hvp.norm(g))
        raw_ratio = 2 * lam * float(hvp.norm(hv)) / g_norm if g_norm > 0 else 0.0
        hv, _ = tg.cap_tangent_term(g, hv, lam, cfg.tangent_max_ratio)
        info["v"], info["hv"] = v, hv
        total = tg.tangent_modified_gradient(g, hv, lam)
        if g_norm > 0:
            self._effect("tangent_ratio", 2 * lam * float(hvp.norm(hv)) / g_norm)
            self._effect("tangent_ratio_uncapped", raw_ratio)
            self._effect("tangent_cos", float(hvp.dot(total, g))
                         / max(float(hvp.norm(total)) * g_norm, 1e-30))
        return total, info

    def _hvp(self, grads: list[torch.Tensor], g: list[torch.Tensor], v: list[torch.Tensor],
             xv: torch.Tensor, yv: torch.Tensor, probs: torch.Tensor, recording: Any,
             logits: torch.Tensor) -> list[torch.Tensor]:
        """``H·v`` of the Child's α loss by ``hessian`` (H of the minimised loss, docs/algorithms.md §Objective and gradients).

        ``recording`` holds the mixed-op calls of the forward that gave ``grads`` (per-sample
        GGN), ``logits`` its output, whose graph is still alive (Gauss-Newton)."""
        import torch

        from automl_bin.search import hvp, per_sample

        cfg = self.config
        alphas = self.child_bl.alphas
        if cfg.hessian == "exact":
            return hvp.exact_hvp_from_grads(grads, alphas, v)

        def loss_on(start: int, stop: int) -> torch.Tensor:
            return self.child_val_loss.loss_from_probs(self.child, xv[start:stop], yv[start:stop],
                                                       probs[start:stop])[0]

        if cfg.hessian == "finite_diff":
            def grad_fn() -> list[torch.Tensor]:
                out = torch.autograd.grad(loss_on(0, len(xv)), alphas, allow_unused=True)
                return [torch.zeros_like(a) if o is None else o for o, a in zip(out, alphas)]

            with hvp.frozen_batchnorm_stats(self.child):
                return hvp.finite_diff_hvp(grad_fn, alphas, v, cfg.fd_eps)
        if cfg.ggn_mode == "per_sample":
            return per_sample.fisher_hvp(recording.contributions(alphas), v)
        if cfg.ggn_mode == "gauss_newton":
            scale = (1.0 + cfg.child_ce_weight) / len(xv)  # batch-mean KL (+ CE) w.r.t. logits
            return hvp.gauss_newton_hvp(
                logits, alphas, v, lambda u: hvp.softmax_output_hvp(logits, u, scale))
        if cfg.ggn_mode == "rank1":
            return hvp.ggn_hvp([g], v)
        with hvp.frozen_batchnorm_stats(self.child):
            samples = hvp.chunk_gradients(loss_on, len(xv), alphas, cfg.ggn_microbatches)
        return hvp.ggn_hvp(samples, v)

    def child_arch_step(self, xv: torch.Tensor, yv: torch.Tensor) -> dict[str, Any]:
        """One Child α step (T.P. gradient, Adam, D.O.); returns the info of
        `child_arch_gradients`."""
        grads, info = self.child_arch_gradients(xv, yv)
        self._apply("child", grads)
        return info

    # -- epochs ---------------------------------------------------------------------------------
    def supernets(self) -> Mapping[str, Any]:
        return {"parent": self.parent, "child": self.child}

    def weight_optimizers(self) -> Mapping[str, Any]:
        return {"parent_w_opt": self.parent_bl.w_opt, "child_w_opt": self.child_bl.w_opt}

    def arch_optimizers(self) -> Mapping[str, Any]:
        return {"parent_a_opt": self.parent_bl.a_opt, "child_a_opt": self.child_bl.a_opt}

    def searched(self, plan: EpochPlan | None = None) -> Any:
        """The Child (the 1-bit network the search returns); in a Parent epoch, the Parent."""
        return self.parent if plan is not None and plan.phase == PHASE_PARENT else self.child

    def plan_epoch(self, epoch: int) -> EpochPlan:
        """The phase of ``epoch`` and each supernet's lr on a cosine over its own epochs."""
        from automl_bin.training import cosine_lr

        rnd, phase, first = self.schedule_position(epoch)
        lr_p = cosine_lr(self.sgd, self._epochs_of("parent", epoch), self._epochs_of("parent"))
        lr_c = cosine_lr(self.sgd, self._epochs_of("child", epoch), self._epochs_of("child"))
        label = {PHASE_WARMUP: "warm-up", PHASE_PARENT: "Parent", PHASE_CHILD: "Child",
                 PHASE_INTERLEAVED: "interleaved"}[phase]
        return EpochPlan(epoch=epoch, label=f"dcp_nas {label} epoch {epoch + 1}",
                         update_arch=phase != PHASE_WARMUP,
                         lrs={"parent_w_opt": lr_p, "child_w_opt": lr_c},
                         lr=lr_c if phase == PHASE_CHILD else lr_p, phase=phase,
                         info={"round": rnd, "first": first})

    def begin_epoch(self, plan: EpochPlan) -> None:
        """Architecture inheritance at the start of a phase (Alg. 10)."""
        cfg = self.config
        phase, rnd, first = plan.phase, plan.info["round"], plan.info["first"]
        if phase == PHASE_PARENT and first and rnd > 0:
            self._copy_arch("child", "parent")  # α ← α̂
        if phase in (PHASE_CHILD, PHASE_INTERLEAVED) and first:
            if phase == PHASE_CHILD and cfg.parent_epochs > 0:
                self._copy_arch("parent", "child")  # α̂ ← α
            if cfg.inherit_weights and not self.child_weights_inherited:
                self._inherit_weights()
        self.effects = {}

    def search_step(self, plan: EpochPlan, xt: torch.Tensor, yt: torch.Tensor,
                    xv: torch.Tensor, yv: torch.Tensor) -> int:
        phase, stats = plan.phase, self.stats
        if phase in (PHASE_PARENT, PHASE_WARMUP, PHASE_INTERLEAVED):
            if phase == PHASE_PARENT:
                stats.mean("arch_loss", self.parent_arch_step(xt, yt, xv, yv))
            elif phase == PHASE_INTERLEAVED:
                self._copy_arch("child", "parent", clear_pending=False)
                stats.mean("parent_arch_loss", self.parent_arch_step(xt, yt, xv, yv))
            loss, logits = self.parent_bl.weight_step(xt, yt)
            stats.observe("train" if phase == PHASE_PARENT else "parent_train", loss, logits, yt)
        if phase == PHASE_PARENT:
            return 0  # the searched Child's weights did not train
        if phase != PHASE_WARMUP:
            if phase == PHASE_INTERLEAVED:
                self._copy_arch("parent", "child", clear_pending=False)
            info = self.child_arch_step(xv, yv)
            stats.mean("arch_loss", info["loss"])
            if "distance" in info:
                stats.mean("tangent_distance", info["distance"])
        loss, logits = self.child_bl.weight_step(xt, yt)
        stats.observe("train", loss, logits, yt)  # train_loss: the Child's weight loss
        if "kl" in self.child_train_loss.last:
            stats.mean("train_kl", self.child_train_loss.last["kl"])
        return len(xt)

    def evaluate(self, plan: EpochPlan) -> dict[str, float]:
        return self._evaluate(plan.epoch)

    def extra_metrics(self, plan: EpochPlan) -> dict[str, float]:
        metrics: dict[str, float] = {"phase": float(plan.phase),
                                     "round": float(plan.info["round"])}
        metrics.update(self._effect_metrics())
        metrics["child_alpha_entropy"] = self.child.arch_entropy()
        if self.config.decoupled:  # mean |ψ̃| of the searched supernet
            psi = self.psi["parent" if plan.phase == PHASE_PARENT else "child"].psi
            metrics["psi_mean"] = (sum(float(p.abs().sum()) for p in psi)
                                   / max(1, sum(p.numel() for p in psi)))
        self.position = {"epoch": plan.epoch, "round": plan.info["round"], "phase": plan.phase}
        return metrics

    def _effect_metrics(self) -> dict[str, float]:
        """``tangent_ratio`` = median ‖2λ·H·v‖/‖g‖ as applied (after ``tangent_max_ratio``;
        ``tangent_ratio_uncapped`` before it) and ``tangent_cos`` = median cos(total, g)
        over the epoch's Child α steps; ``decoupled_ratio`` = Σ‖backtrack‖/Σ‖Adam step‖ on the
        backtracked edges. Warns once per mechanism when it is inert (below `INERT`)."""
        import statistics

        out: dict[str, float] = {}
        for key in ("tangent_ratio", "tangent_ratio_uncapped", "tangent_cos"):
            if self.effects.get(key):
                out[key] = float(statistics.median(self.effects[key]))
        step = sum(self.effects.get("adam_step_norm", []))
        if step > 0:
            out["decoupled_ratio"] = sum(self.effects.get("backtrack_norm", [])) / step
        if out.get("tangent_ratio", 1.0) < INERT:
            self._warn_once("tangent", (
                f"tangent propagation is inert: ‖2λ·H·v‖ is {out['tangent_ratio']:.2e} of the "
                f"α gradient (below {INERT}), so this row searches like first-order DARTS on the "
                f"KL. Raise [strategy] lambda_tangent (now {self.config.lambda_tangent:g})."))
        if out.get("decoupled_ratio", 1.0) < INERT:
            self._warn_once("decoupled", (
                f"decoupled optimisation is inert: the backtrack is {out['decoupled_ratio']:.2e} "
                f"of the Adam step (below {INERT}). Raise [strategy] psi_init (now "
                f"{self.config.psi_init:g}) or psi_lr (now {self.config.psi_lr:g}), or use "
                "eta_mode = \"unit\"."))
        return out

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.env.reporter.info(f"Warning: {message}")

    def _evaluate(self, epoch: int) -> dict[str, float]:
        """Supernet accuracies of Parent and Child on val (eval mode), their KL, and L_R."""
        import torch
        import torch.nn.functional as F

        val = self.env.splits["val"]
        n, p_correct, c_correct, c_loss, p_loss, kl = 0, 0.0, 0.0, 0.0, 0.0, 0.0
        with torch.no_grad(), _eval_mode(self.parent), _eval_mode(self.child):
            for i, (x, y) in enumerate(val.batches(epoch, shuffle=False)):
                if self.config.eval_batches and i >= self.config.eval_batches:
                    break
                lp, lc = self.parent(x), self.child(x)
                n += int(y.shape[0])
                p_correct += float((lp.argmax(1) == y).sum())
                c_correct += float((lc.argmax(1) == y).sum())
                p_loss += float(F.cross_entropy(lp, y, reduction="sum"))
                c_loss += float(F.cross_entropy(lc, y, reduction="sum"))
                kl += float(F.kl_div(F.log_softmax(lc, 1), F.softmax(lp, 1), reduction="sum"))
            rec = self.env.binarizer.reconstruction_error(self.child)
        n = max(n, 1)
        mse = float(rec) if rec is not None else 0.0
        return {"parent_val_acc": p_correct / n, "parent_val_loss": p_loss / n,
                "child_val_acc": c_correct / n, "val_acc": c_correct / n, "val_loss": c_loss / n,
                "kl": kl / n, "recon_mse": mse, "recon_loss": self.config.mu_rec * mse}

    # -- results and state ----------------------------------------------------------------------
    def tags(self) -> Mapping[str, str]:
        cfg = self.config  # the Table 4.3 ablation switches, as run tags
        return {"tangent": str(cfg.tangent).lower(), "hessian": cfg.hessian,
                "decoupled": str(cfg.decoupled).lower()}

    def final_metrics(self) -> Mapping[str, float]:
        cfg = self.config
        return {"tangent": float(cfg.tangent), "hessian": float(HESSIAN_CODES[cfg.hessian]),
                "decoupled": float(cfg.decoupled)}

    def extra_state(self) -> dict[str, Any]:
        return {
            "psi": {who: s.state_dict() for who, s in self.psi.items()},
            "ema": self.ema.state_dict(),
            "position": dict(self.position),
            "child_weights_inherited": self.child_weights_inherited,
        }

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        for who, s in state["psi"].items():
            self.psi[who].load_state_dict(s)
        self.ema.load_state_dict(state["ema"])
        self.position = dict(state.get("position", self.position))
        self.child_weights_inherited = bool(state.get("child_weights_inherited", False))


@hookimpl
def register_strategies(register: Register) -> None:
    register("dcp_nas", DcpNasStrategy)
