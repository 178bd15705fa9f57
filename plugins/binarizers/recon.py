"""The ``recon`` binarizer: learned channel scales with a reconstruction loss (CP-NAS/DCP-NAS).

Model (book Eq. 4.22–4.23, PCNN/MCN style; docs/algorithms.md §Reconstruction binarizer): each
binarized conv computes with ``Ŵ = β ∘ sign(W)``, where ``β = |M|`` is a **learned**
per-output-channel scale. Training adds

- the reconstruction loss ``λ_rec · mean_l MSE(W_l, β_l ∘ sign(W_l))`` (book Eq. 4.23;
  mean over layers of per-element MSE so the weight does not scale with model size),
- the CP-NAS intra-class compactness loss ``μ_cmp · mean_s ‖f_s − c_{y_s}‖²`` over the batch's
  penultimate features ``f`` (book p.104; docs/algorithms.md §CP-NAS), with ``c`` the batch
  class means or an EMA memory of class centres.

Gradients: ``∂/∂W = g · β · 1_{|W|≤1}`` (STE through sign, times the scale); ``∂/∂M`` flows through
``|M|`` by autograd (``Σ g·sign(W)·sign(M)`` per channel). M starts at ``mean|W_c|`` (set at the
first forward, under no_grad), so the initial ``Ŵ`` is the XNOR approximation.

``fold_into_backward=True`` reproduces the DCP-NAS repo exactly (``binary/MFunction_new.py``
``MCF_Function``): forward ``sign(W)·0.02·|M|`` and a handwritten backward

- ``∂/∂W = g·|M| + λ_rec·(W − Ŵ)``
- ``∂/∂M = Σ_{c_in,k,k}(g ⊙ W) − λ_rec·Σ_{c_in,k,k}((W − Ŵ) ⊙ 0.02·sign(W))``

so the reconstruction acts inside the backward pass and is not returned by `aux_losses`. (The
repo takes ``|M|`` before saving it for backward, so its ``g·M`` factor is ``g·|M|``.) In that
mode M starts at ``mean|W_c| / 0.02`` (the repo draws ``randn``, which makes ``Ŵ`` unrelated to
``W`` at the start); sign maps 0 to +1 in both modes (the repo's ``torch.sign`` maps 0 to 0).

Importing this module stays torch-free: the module classes are defined on first use and exposed
through `__getattr__` (``ReconWeightQuantizer``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Literal

import attrs

from automl_bin.interfaces import Binarizer

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["FOLD_BIN", "ReconBinarizer", "ReconConfig", "compactness_loss", "reconstruction_mse"]

#: the DCP-NAS repo's fixed magnitude "bin" of the folded mode: Ŵ = sign(W)·0.02·|M|
FOLD_BIN = 0.02

_ge0 = attrs.validators.ge(0)


@attrs.frozen(kw_only=True)
class ReconConfig:
    #: activation sign: "ste" (clipped identity backward) or "approx_sign" (Bi-Real polynomial)
    activation: Literal["ste", "approx_sign"] = attrs.field(
        default="approx_sign", validator=attrs.validators.in_(("ste", "approx_sign")))
    #: weight of the reconstruction loss mean_l MSE(W, |M|∘sign(W)) (DCP-NAS para_loss: 1e-4)
    lambda_rec: float = attrs.field(default=1e-4, validator=_ge0)
    #: weight of the intra-class compactness loss on the penultimate features (CP-NAS)
    mu_cmp: float = attrs.field(default=1e-4, validator=_ge0)
    #: class centres for compactness: 0 = means of the current batch; in (0, 1) = an EMA memory
    #: c ← m·c + (1−m)·batch mean (held by the binarizer, not checkpointed)
    center_momentum: float = attrs.field(
        default=0.0, validator=[_ge0, attrs.validators.lt(1)])
    #: reproduce the DCP-NAS repo: forward sign(W)·0.02·|M|, reconstruction folded into a
    #: handwritten backward (then it is not an aux loss)
    fold_into_backward: bool = False


def reconstruction_mse(weight: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``mean((W − β∘sign(W))²)``; sign has no gradient, so ``∂/∂W = 2(W − Ŵ)/numel``."""
    from automl_bin_plugins.binarizers.activations import sign_pm1

    return (weight - beta * sign_pm1(weight)).pow(2).mean()


def compactness_loss(features: torch.Tensor, labels: torch.Tensor,
                     centres: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_s ‖f_s − c_{y_s}‖²`` (features ``(N, D)``, labels ``(N,)``).

    Without ``centres`` (``(K, D)``, used as constants) ``c`` is the batch mean of each class.
    Those means are not detached: the loss is then exactly the within-class scatter, whose
    gradient ``2(f_s − c_{y_s})/N`` is the same as with detached means (the cross terms cancel)
    and whose higher derivatives stay consistent for second-order code.
    """
    import torch

    if centres is None:
        # One-hot matmuls instead of index_add / fancy indexing: the backward of ``means[inverse]``
        # accumulates with a parallel index_put on CPU, whose summation order (and so the
        # result's last bits) changed from run to run at 32k elements (128 x 256); a seeded
        # run must repeat exactly.
        _, inverse = torch.unique(labels, return_inverse=True)
        onehot = torch.nn.functional.one_hot(inverse).to(features.dtype)  # (N, K)
        means = (onehot.t() @ features) / onehot.sum(dim=0)[:, None]
        target = onehot @ means
    else:
        target = centres.detach()[labels]
    return (features - target).pow(2).sum(dim=1).mean()


@functools.cache  # defines the classes once, on first use, so that importing stays torch-free
def _classes() -> dict[str, type]:
    import torch
    from torch import nn

    from automl_bin_plugins.binarizers.activations import sign_pm1, ste_sign

    class FoldedReconFunction(torch.autograd.Function):
        """DCP-NAS ``MCF_Function``: forward ``sign(W)·0.02·|M|``, handwritten backward.

        ``setup_context`` is separate from ``forward`` so that ``torch.func`` can transform it.
        """

        @staticmethod
        def forward(weight: torch.Tensor, m: torch.Tensor,  # type: ignore[override]
                    lambda_rec: float) -> torch.Tensor:
            return sign_pm1(weight) * FOLD_BIN * m.abs()

        @staticmethod
        def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            weight, m, lambda_rec = inputs
            ctx.save_for_backward(weight, m)
            ctx.lambda_rec = lambda_rec

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
            weight, m = ctx.saved_tensors
            m_abs = m.abs()  # the repo saves |M| (abs before save_for_backward)
            bin_w = sign_pm1(weight) * FOLD_BIN
            residual = weight - bin_w * m_abs  # W − Ŵ
            grad_w = grad * m_abs + ctx.lambda_rec * residual
            dims = (1, 2, 3)
            grad_m = ((grad * weight).sum(dim=dims, keepdim=True)
                      - ctx.lambda_rec * (residual * bin_w).sum(dim=dims, keepdim=True))
            return grad_w, grad_m, None

    class ReconWeightQuantizer(nn.Module):
        """``β ∘ sign(W)`` with a learned per-channel ``M`` of shape ``(C_out, 1, 1, 1)``.

        ``β = |M|`` (``0.02·|M|`` when folded). M is set from the first weight it sees; the
        ``initialized`` buffer records that, so a loaded state dict is not re-initialised.
        """

        def __init__(self, out_channels: int, fold: bool = False,
                     lambda_rec: float = 1e-4) -> None:
            super().__init__()
            self.fold = fold
            self.lambda_rec = lambda_rec
            # placeholder until the first forward; the Parameter object stays the same, so an
            # optimizer built before that forward still trains it
            self.M = nn.Parameter(torch.ones(out_channels, 1, 1, 1))
            self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
            # Python-side cache of ``initialized``: reading the buffer would sync the GPU on
            # every forward
            self._ready = False

        @property
        def initialised(self) -> bool:
            """Whether ``M`` has been set from a weight (a forward ran, or a state was loaded
            and a forward re-read it)."""
            return self._ready

        def ensure_initialised(self, weight: torch.Tensor) -> None:
            """Set ``M`` from ``weight`` now if no forward has yet (the reconstruction loss of a
            conv that has not run)."""
            if not self._ready:
                self._lazy_init(weight)

        def beta(self) -> torch.Tensor:
            """The per-channel scale ``(C_out, 1, 1, 1)`` of the binarized weight."""
            return self.M.abs() * FOLD_BIN if self.fold else self.M.abs()

        def _lazy_init(self, weight: torch.Tensor) -> None:
            if not bool(self.initialized):
                with torch.no_grad():
                    scale = weight.abs().mean(dim=(1, 2, 3), keepdim=True)
                    self.M.copy_(scale / FOLD_BIN if self.fold else scale)
                    self.initialized.fill_(True)
            self._ready = True

        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            if not self._ready:
                self._lazy_init(weight)
            if self.fold:
                return FoldedReconFunction.apply(weight, self.M, self.lambda_rec)
            # forward exactly ±|M_c|; ∂/∂W = g·|M|·1_{|W|≤1}; ∂/∂M by autograd through |M|
            return self.M.abs() * ste_sign(weight)

        def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
            super()._load_from_state_dict(*args, **kwargs)
            self._ready = False  # re-read the loaded ``initialized`` at the next forward

        def extra_repr(self) -> str:
            return f"out_channels={self.M.shape[0]}, fold={self.fold}"

    # module-level names, so that pickling finds them through __getattr__ below
    FoldedReconFunction.__qualname__ = "FoldedReconFunction"
    ReconWeightQuantizer.__qualname__ = "ReconWeightQuantizer"
    return {"FoldedReconFunction": FoldedReconFunction,
            "ReconWeightQuantizer": ReconWeightQuantizer}


def __getattr__(name: str) -> Any:
    if name in ("FoldedReconFunction", "ReconWeightQuantizer"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ReconBinarizer(Binarizer):
    """1-bit weights ``|M|∘sign(W)`` and activations, with reconstruction/compactness losses."""

    Config = ReconConfig
    weight_bits = 1
    activation_bits = 1

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        # EMA class centres (K, D) and which classes have been seen; created lazily from the
        # first features, grown when a larger label appears. Per-binarizer state, not saved.
        self._centres: torch.Tensor | None = None
        self._seen: torch.Tensor | None = None

    def weight_quantizer(self, out_channels: int) -> nn.Module:
        cfg = self.config
        return _classes()["ReconWeightQuantizer"](
            out_channels, fold=cfg.fold_into_backward, lambda_rec=cfg.lambda_rec)

    def activation_quantizer(self) -> nn.Module:
        from automl_bin_plugins.binarizers.activations import make_activation

        return make_activation(self.config.activation, False)

    def aux_losses(self, model: nn.Module, features: torch.Tensor | None = None,
                   labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``recon_loss`` (unless folded or λ_rec = 0) and ``compactness_loss`` (when features
        and labels are given and μ_cmp > 0), each already weighted.

        The reconstruction covers every `QConv2d` of ``model`` whose weight quantizer is a
        non-folded ``ReconWeightQuantizer`` that has run a forward, skipping convs running their
        real weights (``binarize_weight=False``, step 1 of two-step training, where the repo's
        folded backward never runs either); it is left out when there is none. With ``center_momentum > 0`` each call also updates the EMA centres, so call it
        once per training step.
        """
        import torch

        cfg = self.config
        losses: dict[str, torch.Tensor] = {}
        if cfg.lambda_rec > 0 and not cfg.fold_into_backward:
            rec = self.reconstruction_error(model, initialised_only=True)
            if rec is not None:
                losses["recon_loss"] = cfg.lambda_rec * rec
        if cfg.mu_cmp > 0 and features is not None and labels is not None:
            centres = self._update_centres(features, labels) if cfg.center_momentum > 0 else None
            losses["compactness_loss"] = cfg.mu_cmp * compactness_loss(features, labels, centres)
        return losses

    def conv_reconstruction_error(self, conv: nn.Module, *,
                                  initialised_only: bool = False) -> torch.Tensor | None:
        """``MSE(ŵ, |M|∘sign ŵ)`` with the learned scale (trained by this term); None for a
        quantizer that folds the reconstruction into its backward, and, with
        ``initialised_only``, for one that has not run a forward yet."""
        quantizer = conv.weight_quantizer
        if not isinstance(quantizer, _classes()["ReconWeightQuantizer"]):
            return super().conv_reconstruction_error(conv, initialised_only=initialised_only)
        if quantizer.fold:
            return None
        if not quantizer.initialised:
            if initialised_only:
                return None
            quantizer.ensure_initialised(conv.weight)
        return reconstruction_mse(conv.weight, quantizer.beta())

    def _update_centres(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Fold the batch class means into the EMA centres; returns the updated ``(K, D)``."""
        import torch

        m = self.config.center_momentum
        with torch.no_grad():
            f = features.detach()
            k = int(labels.max()) + 1
            d = f.shape[1]
            centres, seen = self._centres, self._seen
            if centres is None or centres.shape[1] != d or centres.device != f.device:
                centres = f.new_zeros(0, d)  # (re)start: first use or another feature size
                seen = torch.zeros(0, dtype=torch.bool, device=f.device)
            if centres.shape[0] < k:  # grow to hold the largest label seen
                centres = torch.cat([centres.to(f.dtype), f.new_zeros(k - centres.shape[0], d)])
                seen = torch.cat([seen, seen.new_zeros(k - seen.shape[0])])
            centres = centres.to(f.dtype)
            sums = f.new_zeros(centres.shape).index_add(0, labels, f)
            counts = torch.bincount(labels, minlength=centres.shape[0]).to(f.dtype)
            present = counts > 0
            means = sums / counts.clamp(min=1)[:, None]
            # a class seen for the first time starts at its batch mean
            ema = torch.where(seen[:, None], m * centres + (1 - m) * means, means)
            centres = torch.where(present[:, None], ema, centres)
            self._centres, self._seen = centres, seen | present
        return centres
