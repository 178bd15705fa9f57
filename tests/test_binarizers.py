"""The 1-bit binarizers (xnor, recon), their activation quantizers and feature capture.

Forward values are checked bit-exactly; surrogate gradients against the formulas of the method
notes (docs/algorithms.md §Binarization) on small hand-picked tensors.
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn

from automl_bin.config import structure
from automl_bin.errors import UsageError
from automl_bin.interfaces import Binarizer
from automl_bin.nn.features import capture_features
from automl_bin.nn.qconv import QConv2d
from automl_bin_plugins.binarizers import builtin, recon, xnor
from automl_bin_plugins.binarizers.activations import (
    ApproxSign,
    SignSTE,
    make_activation,
    sign_pm1,
)
from automl_bin_plugins.binarizers.none import NoBinarizer
from automl_bin_plugins.binarizers.recon import (
    FOLD_BIN,
    ReconBinarizer,
    ReconConfig,
    compactness_loss,
)
from automl_bin_plugins.binarizers.xnor import XnorBinarizer, XnorConfig

POINTS = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5], dtype=torch.float64)


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-6) -> None:
    """Element-wise |actual - expected| <= atol (cheaper to import than torch.testing)."""
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = (actual - expected).abs().max().item()
    assert diff <= atol, f"max abs difference {diff:.3g} > {atol:.3g}"


def _weight(seed: int = 0) -> torch.Tensor:
    """A (3, 2, 2, 2) weight holding exact zeros, ±1 and values beyond the clip range."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64) * 0.8
    w[0, 0, 0, 0] = 0.0
    w[1, 0, 0, 1] = 1.0
    w[1, 1, 1, 1] = -1.0
    w[2, 0, 1, 0] = 1.7
    w[2, 1, 0, 0] = -2.2
    return w


def _grad(fn, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, d<out, g>/dx)."""
    x = x.clone().requires_grad_(True)
    out = fn(x)
    (grad,) = torch.autograd.grad((out * g).sum(), x)
    return out.detach(), grad


def _upstream(shape: torch.Size, seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------- activation quantizers


def test_sign_maps_zero_to_plus_one() -> None:
    assert sign_pm1(POINTS).tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert sign_pm1(torch.tensor([-0.0])).tolist() == [1.0]


def test_sign_ste_forward_and_clipped_identity_backward() -> None:
    out, grad = _grad(SignSTE(), POINTS, torch.ones_like(POINTS))
    assert out.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert grad.tolist() == [0, 1, 1, 1, 1, 1, 0]  # 1_{|x|≤1}, closed interval


def test_approx_sign_derivative_is_the_bireal_polynomial() -> None:
    out, grad = _grad(ApproxSign(), POINTS, torch.ones_like(POINTS))
    assert out.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    # 2+2x on [-1,0), 2-2x on [0,1), 0 elsewhere
    assert grad.tolist() == [0.0, 0.0, 1.0, 2.0, 1.0, 0.0, 0.0]
    x = torch.linspace(-0.99, 0.99, 23, dtype=torch.float64)
    _, grad = _grad(ApproxSign(), x, torch.ones_like(x))
    expected = torch.where(x < 0, 2 + 2 * x, 2 - 2 * x)
    _close(grad, expected)


def test_activation_scale_is_channel_mean_of_abs() -> None:
    x = _upstream(torch.Size([2, 3, 4, 4]))
    for name in ("ste", "approx_sign"):
        q = make_activation(name, scale=True)
        k = x.abs().mean(dim=1, keepdim=True)
        assert torch.equal(q(x), sign_pm1(x) * k)
        assert torch.equal(make_activation(name, scale=False)(x), sign_pm1(x))
    assert isinstance(make_activation("ste", False), SignSTE)
    assert isinstance(make_activation("approx_sign", False), ApproxSign)
    with pytest.raises(ValueError, match="approx_sign"):
        make_activation("sign", False)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- xnor


def test_xnor_forward_is_exactly_plus_minus_alpha_per_channel() -> None:
    w = _weight()
    q = XnorBinarizer().weight_quantizer(3)
    out = q(w)
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    assert torch.equal(out, torch.where(w >= 0, alpha, -alpha))
    assert out[0, 0, 0, 0] == alpha[0, 0, 0, 0]  # sign(0) = +1


@pytest.mark.parametrize("mode", ["ste", "xnor"])
def test_xnor_weight_gradients_follow_the_formulas(mode: str) -> None:
    w = _weight()
    g = _upstream(w.shape)
    q = XnorBinarizer(XnorConfig(weight_grad=mode)).weight_quantizer(3)
    out, grad = _grad(q, w, g)
    mask = (w.abs() <= 1).to(w.dtype)
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    n = 2 * 2 * 2
    expected = g * mask if mode == "ste" else g * (1 / n + alpha * mask)
    _close(grad, expected, atol=1e-12)
    assert torch.equal(out, alpha * sign_pm1(w))  # the backward rule does not change the value


# --------------------------------------------------------------------------------- recon


def test_recon_lazy_init_forward_and_gradients() -> None:
    w = _weight()
    q = ReconBinarizer().weight_quantizer(3).double()
    assert not bool(q.initialized)
    out = q(w)
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    assert bool(q.initialized) and torch.equal(q.M.detach(), alpha)  # M = mean|W_c|
    assert torch.equal(out, torch.where(w >= 0, alpha, -alpha))

    with torch.no_grad():
        q.M.mul_(torch.tensor([1.0, -2.0, 0.5], dtype=w.dtype).view(3, 1, 1, 1))
    beta = q.M.detach().abs()
    g = _upstream(w.shape)
    wr = w.clone().requires_grad_(True)
    out = q(wr)
    assert torch.equal(out.detach(), torch.where(w >= 0, beta, -beta))  # ±|M_c|
    grad_w, grad_m = torch.autograd.grad((out * g).sum(), (wr, q.M))
    mask = (w.abs() <= 1).to(w.dtype)
    _close(grad_w, g * beta * mask, atol=1e-12)
    expected_m = (g * sign_pm1(w)).sum(dim=(1, 2, 3), keepdim=True) * q.M.detach().sign()
    _close(grad_m, expected_m, atol=1e-12)


def test_recon_state_dict_round_trip_keeps_the_learned_scale() -> None:
    b = ReconBinarizer()
    q1 = b.weight_quantizer(3)
    q1(_weight().float())
    with torch.no_grad():
        q1.M.add_(0.25)
    state = q1.state_dict()
    assert set(state) == {"M", "initialized"} and bool(state["initialized"])

    q2 = b.weight_quantizer(3)
    q2.load_state_dict(state)
    other = _weight(seed=5).float() * 3
    out = q2(other)  # must not re-initialise from this weight
    assert torch.equal(q2.M, q1.M)
    assert torch.equal(out.abs(), q1.M.detach().abs().expand_as(other))

    # a used quantizer that loads a fresh (uninitialised) state initialises again
    q3 = b.weight_quantizer(3)
    q2.load_state_dict(q3.state_dict())
    q2(other)
    _close(q2.M.detach(), other.abs().mean(dim=(1, 2, 3), keepdim=True))

    # deep copies and pickles (the classes are defined lazily) keep working
    q4 = pickle.loads(pickle.dumps(q1))
    assert torch.equal(copy.deepcopy(q1).M, q1.M) and torch.equal(q4.M, q1.M)
    assert type(q4) is recon.ReconWeightQuantizer


def _tiny_model(binarizer: Binarizer) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        QConv2d(2, 3, 3, binarizer=binarizer, padding=1),
        nn.BatchNorm2d(3),
        QConv2d(3, 4, 1, binarizer=binarizer, binarize_input=True),
    )


def test_recon_loss_is_lambda_times_mean_layer_mse() -> None:
    b = ReconBinarizer(ReconConfig(lambda_rec=0.5, mu_cmp=0.0))
    model = _tiny_model(b)
    assert b.aux_losses(model) == {}  # no layer has run yet
    model(torch.randn(2, 2, 5, 5))
    with torch.no_grad():
        model[2].weight_quantizer.M.mul_(1.5)  # make the two layers' errors differ
    mses = []
    for conv in (model[0], model[2]):
        w = conv.weight.detach()
        beta = conv.weight_quantizer.M.detach().abs()
        diff = w - torch.where(w >= 0, beta, -beta)
        mses.append((diff**2).sum() / w.numel())
    losses = b.aux_losses(model)
    assert set(losses) == {"recon_loss"}
    _close(losses["recon_loss"], 0.5 * (mses[0] + mses[1]) / 2)
    losses["recon_loss"].backward()
    assert model[0].weight.grad is not None and model[0].weight_quantizer.M.grad is not None
    assert ReconBinarizer(ReconConfig(lambda_rec=0.0, mu_cmp=0.0)).aux_losses(model) == {}
    model[0].binarize_weight = False  # real-weight step: that layer is left out
    _close(b.aux_losses(model)["recon_loss"], 0.5 * mses[1])


def test_compactness_is_mu_times_mean_distance_to_class_means() -> None:
    f = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0], [4.0, 4.0], [2.0, 2.0]])
    y = torch.tensor([0, 0, 2, 2, 1])
    # class 0 mean (2, 1): distances 2 + 2; class 2 mean (2, 4.5): 4.25 + 4.25; class 1: 0
    expected = 0.3 * (2 + 2 + 4.25 + 4.25 + 0) / 5
    b = ReconBinarizer(ReconConfig(lambda_rec=0.0, mu_cmp=0.3))
    fr = f.clone().requires_grad_(True)
    losses = b.aux_losses(nn.Identity(), fr, y)
    assert set(losses) == {"compactness_loss"}
    _close(losses["compactness_loss"], torch.tensor(expected))
    losses["compactness_loss"].backward()
    means = torch.tensor([[2.0, 1.0], [2.0, 2.0], [2.0, 4.5]])[y]
    _close(fr.grad, 0.3 * 2 * (f - means) / 5)
    assert b.aux_losses(nn.Identity()) == {}  # no features: no term


def test_compactness_gradient_repeats_bit_for_bit() -> None:
    # A seeded run must repeat exactly. The backward of fancy indexing (means[inverse])
    # accumulates with a parallel index_put on CPU whose order varies at 32k elements:
    # with it, a retrain on Fashion-MNIST features (128 x 256) differed run to run.
    g = torch.Generator().manual_seed(0)
    f = torch.randn(128, 512, generator=g, dtype=torch.float32)
    y = torch.randint(0, 10, (128,), generator=g)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the parallel path needs two threads; CI has two cores
    try:
        grads = set()
        for _ in range(20):
            fr = f.clone().requires_grad_(True)
            compactness_loss(fr, y).backward()
            assert fr.grad is not None
            grads.add(fr.grad.numpy().tobytes())
    finally:
        torch.set_num_threads(threads)
    assert len(grads) == 1
    # and it is still the within-class scatter
    fr = f.clone().double().requires_grad_(True)
    compactness_loss(fr, y).backward()
    means = torch.stack([f.double()[y == k].mean(0) for k in range(10)])[y]
    _close(fr.grad, 2 * (f.double() - means) / 128)


def test_compactness_with_ema_centres() -> None:
    b = ReconBinarizer(ReconConfig(lambda_rec=0.0, mu_cmp=1.0, center_momentum=0.9))
    f1 = torch.tensor([[1.0, 1.0], [3.0, 1.0]])
    y1 = torch.tensor([1, 1])
    first = b.aux_losses(nn.Identity(), f1, y1)["compactness_loss"]
    _close(first, torch.tensor(1.0))  # first batch: centre = batch mean (2, 1)
    f2 = torch.tensor([[12.0, 1.0], [0.0, 0.0]])
    y2 = torch.tensor([1, 3])
    second = b.aux_losses(nn.Identity(), f2, y2)["compactness_loss"]
    c1 = torch.tensor([0.9 * 2 + 0.1 * 12, 1.0])  # EMA of class 1; class 3 starts at (0, 0)
    _close(second, ((f2[0] - c1) ** 2).sum() / 2)
    assert b._centres is not None and b._centres.shape == (4, 2)


def test_folded_mode_reproduces_the_dcp_nas_backward() -> None:
    lam = 1e-2  # larger than the default so the folded term is visible
    b = ReconBinarizer(ReconConfig(fold_into_backward=True, lambda_rec=lam, mu_cmp=0.0))
    q = b.weight_quantizer(3).double()
    w = _weight()
    q(w)
    _close(q.M.detach() * FOLD_BIN,
                               w.abs().mean(dim=(1, 2, 3), keepdim=True))
    with torch.no_grad():
        q.M.mul_(torch.tensor([1.0, -1.3, 0.7], dtype=w.dtype).view(3, 1, 1, 1))
    m_abs = q.M.detach().abs()
    g = _upstream(w.shape)
    wr = w.clone().requires_grad_(True)
    out = q(wr)
    w_hat = sign_pm1(w) * FOLD_BIN * m_abs
    assert torch.equal(out.detach(), w_hat)
    grad_w, grad_m = torch.autograd.grad((out * g).sum(), (wr, q.M))
    _close(grad_w, g * m_abs + lam * (w - w_hat), atol=1e-12)
    expected_m = ((g * w).sum(dim=(1, 2, 3), keepdim=True)
                  - lam * ((w - w_hat) * FOLD_BIN * sign_pm1(w)).sum(dim=(1, 2, 3), keepdim=True))
    _close(grad_m, expected_m, atol=1e-12)
    # torch.func can differentiate through it (setup_context)
    _, vjp = torch.func.vjp(lambda x: q(x), w)
    _close(vjp(g)[0], grad_w)

    model = _tiny_model(b)
    model(torch.randn(2, 2, 5, 5))
    assert b.aux_losses(model) == {}  # reconstruction lives in the backward


def test_surrogates_work_under_torch_func() -> None:
    w = _weight()
    g = _upstream(w.shape)
    for q in (XnorBinarizer().weight_quantizer(3), ReconBinarizer().weight_quantizer(3).double(),
              make_activation("approx_sign", True)):
        q(w)  # lazy init outside the transform
        _, vjp = torch.func.vjp(lambda x, q=q: q(x), w)
        _, ref = _grad(q, w, g)
        _close(vjp(g)[0], ref)


# ------------------------------------------------------------------ config, bits, plumbing


def test_config_validation_errors() -> None:
    with pytest.raises(UsageError, match="binarizer.activation.*'ste', 'approx_sign'"):
        structure(XnorConfig, {"activation": "sign"}, "binarizer")
    with pytest.raises(UsageError, match="'ste', 'xnor'"):
        structure(XnorConfig, {"weight_grad": "exact"}, "binarizer")
    with pytest.raises(UsageError, match="act_scale"):
        structure(XnorConfig, {"act_scale": 1}, "binarizer")
    with pytest.raises(UsageError, match="lambda_rec"):
        structure(ReconConfig, {"lambda_rec": -1.0}, "binarizer")
    with pytest.raises(UsageError, match="center_momentum"):
        structure(ReconConfig, {"center_momentum": 1.0}, "binarizer")
    with pytest.raises(UsageError, match="Unknown recipe key 'binarizer.lamda_rec'"):
        structure(ReconConfig, {"lamda_rec": 0.1}, "binarizer")
    cfg = structure(ReconConfig, {"mu_cmp": 0, "fold_into_backward": True,
                                  "activation": "ste"}, "binarizer")
    assert cfg == ReconConfig(mu_cmp=0.0, fold_into_backward=True, activation="ste")
    assert structure(XnorConfig, {}, "binarizer") == XnorConfig()


def test_bits_and_registration() -> None:
    registered: dict[str, type] = {}
    builtin.register_binarizers(lambda name, cls: registered.__setitem__(name, cls))
    assert registered == {"xnor": XnorBinarizer, "recon": ReconBinarizer}
    for cls in registered.values():
        assert issubclass(cls, Binarizer)
        assert cls.weight_bits == 1 and cls.activation_bits == 1 and cls().is_binary
    assert NoBinarizer().aux_losses(nn.Identity(), torch.zeros(2, 3), torch.zeros(2)) == {}


def test_builtin_registration_import_is_torch_free() -> None:
    code = ("import sys; import automl_bin_plugins.binarizers.builtin; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ), check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("binarizer", [
    XnorBinarizer(),
    XnorBinarizer(XnorConfig(activation="ste", act_scale=True, weight_grad="xnor")),
    ReconBinarizer(),
    ReconBinarizer(ReconConfig(activation="ste", fold_into_backward=True)),
], ids=["xnor", "xnor-ste-scaled", "recon", "recon-folded"])
def test_qconv_runs_forward_and_backward(binarizer: Binarizer) -> None:
    model = _tiny_model(binarizer)
    x = torch.randn(2, 2, 5, 5)
    out = model(x)
    loss = out.pow(2).mean() + sum(binarizer.aux_losses(model).values())
    loss.backward()
    for conv in (model[0], model[2]):
        assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
        assert conv.weight.grad.abs().sum() > 0
        assert conv.weight_bits == 1
    assert model[2].input_bits == 1 and model[0].input_bits == 32
    params = dict(model.named_parameters())
    assert ("0.weight_quantizer.M" in params) == isinstance(binarizer, ReconBinarizer)


def test_capture_features_returns_flattened_hooked_output() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3)
            self.feature_module = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.feature_module(self.conv(x)).flatten(1))

    net = Net()
    x = torch.randn(4, 1, 6, 6)
    with capture_features(net) as feats:
        assert feats.value is None
        net(x)
    expected = net.conv(x).mean(dim=(2, 3))
    assert feats.value is not None and feats.value.shape == (4, 3)
    _close(feats.value, expected)
    assert feats.value.requires_grad  # still attached to the graph
    assert not net.feature_module._forward_hooks  # hook removed on exit
    with capture_features(nn.Sequential(nn.Linear(2, 2))) as none_feats:
        nn.Sequential(nn.Linear(2, 2))(torch.zeros(1, 2))
    assert none_feats.value is None
