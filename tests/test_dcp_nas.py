"""DCP-NAS: the HVP mechanisms, tangent distances, decoupled step and the ``dcp_nas`` strategy.

Tiny supernets only (2 cells, C = 4, 2 nodes, 1×8×8 inputs, batches of 16, 1–2 steps).
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from automl_bin.data import make_splits
from automl_bin.testing import RecordingReporter
from automl_bin.interfaces import SearchEnv
from automl_bin.search import decoupled as dec
from automl_bin.search.bilevel import ArchConfig, BilevelOptimizer
from automl_bin.search.hvp import (
    chunk_gradients,
    dot,
    exact_hvp,
    finite_diff_hvp,
    frozen_batchnorm_stats,
    ggn_hvp,
)
from automl_bin.search.tangent import (
    TangentEMA,
    distance_direction,
    tangent_direction,
    tangent_distance,
)
from automl_bin_plugins.binarizers.none import NoBinarizer
from automl_bin_plugins.binarizers.xnor import XnorBinarizer
from automl_bin_plugins.darts_space.space import DartsConfig, DartsSpace
from automl_bin_plugins.datasets.synthetic import Synthetic
from automl_bin_plugins.strategies.dcp_nas import (
    PHASE_CHILD,
    PHASE_INTERLEAVED,
    PHASE_PARENT,
    DcpNasConfig,
    DcpNasStrategy,
    ParentKL,
)


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def splits():
    cfg = Synthetic.Config(num_classes=3, channels=1, image_size=8, train_size=64, test_size=32)
    data = Synthetic(cfg).load()
    return data, make_splits(data, batch_size=16, eval_batch_size=32, train_portion=0.5,
                             subset=None, seed=0, device=torch.device("cpu"))


def _space(ops: str = "binary") -> DartsSpace:
    return DartsSpace(DartsConfig(layers=2, init_channels=4, nodes=2, stem_multiplier=1, ops=ops))


def _env(splits, tmp_path) -> SearchEnv:
    data, sp = splits
    return SearchEnv(space=_space(), binarizer=XnorBinarizer(), input_shape=data.input_shape,
                     num_classes=data.num_classes, device=torch.device("cpu"), seed=0,
                     splits=sp, reporter=RecordingReporter(tmp_path),
                     create=lambda kind, name, config=None: NoBinarizer())


def _strategy(splits, tmp_path, **kw) -> DcpNasStrategy:
    torch.manual_seed(0)
    base = dict(warmup_epochs=0, rounds=1, parent_epochs=1, child_epochs=1, max_steps=2,
                eval_batches=1)
    strategy = DcpNasStrategy(DcpNasConfig(**{**base, **kw}))
    strategy.setup(_env(splits, tmp_path))
    return strategy


def _val_batch(splits):
    return next(iter(splits[1]["val"].batches(0, shuffle=False)))


def _flat(ts) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def _hessian_of(net: nn.Module, x: torch.Tensor, loss) -> torch.Tensor:
    """Dense ``∇²_α loss(net(x))`` over the flattened architecture parameters."""
    alphas = net.arch_parameters()
    names = [n for n, p in net.named_parameters() if any(p is a for a in alphas)]
    shapes = [a.shape for a in alphas]
    sizes = [a.numel() for a in alphas]

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts = [p.reshape(s) for p, s in zip(flat.split(sizes), shapes)]
        return loss(torch.func.functional_call(net, dict(zip(names, parts)), (x,)))

    with frozen_batchnorm_stats(net):
        return torch.autograd.functional.hessian(f, _flat([a.detach() for a in alphas]))


# -- Hessian-vector products -----------------------------------------------------------------------
def test_exact_hvp_matches_dense_hessian():
    """Double backward = the dense Hessian times v (real-valued supernet, float64).

    (With straight-through signs the dense "Hessian" is the Jacobian J of the surrogate
    gradient, which is not symmetric, and double backward gives Jᵀv: the product the chain rule
    ∇_α D(g(α)) = Jᵀ∇_g D needs; the tangent-term test below checks that on the 1-bit Child.)
    """
    torch.manual_seed(0)
    net = _space("real").build_supernet((1, 8, 8), 3, NoBinarizer()).double().train()
    with torch.no_grad():  # away from the symmetric start, where the Hessian is degenerate
        for a in net.arch_parameters():
            a.normal_(0, 0.5)
    x, y = torch.randn(8, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (8,))
    alphas = net.arch_parameters()
    v = [torch.randn_like(a) for a in alphas]
    with frozen_batchnorm_stats(net):
        hv = exact_hvp(F.cross_entropy(net(x), y), alphas, v)
    dense = _hessian_of(net, x, lambda logits: F.cross_entropy(logits, y))
    assert torch.allclose(dense, dense.T, atol=1e-10)
    expected = dense @ _flat(v)
    rel = (_flat(hv) - expected).norm() / expected.norm()
    assert rel <= 1e-2, rel


def _smooth_toy():
    torch.manual_seed(0)
    w = torch.randn(5, 4, dtype=torch.float64)
    x = torch.randn(16, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    alpha = nn.Parameter(torch.randn(3, 4, dtype=torch.float64))

    def loss(start: int = 0, stop: int = 16) -> torch.Tensor:
        logits = torch.tanh(x[start:stop] @ w) @ torch.softmax(alpha, dim=1).T
        return F.cross_entropy(logits, y[start:stop])

    return alpha, loss


def test_finite_difference_hvp_on_smooth_float64_toy():
    alpha, loss = _smooth_toy()
    v = [torch.randn_like(alpha)]
    before = alpha.detach().clone()
    exact = exact_hvp(loss(), [alpha], v)[0]
    fd = finite_diff_hvp(lambda: torch.autograd.grad(loss(), [alpha]), [alpha], v)[0]
    assert torch.equal(alpha.detach(), before)  # restored bit-exactly
    assert torch.allclose(fd, exact, rtol=1e-3, atol=1e-6)
    assert torch.count_nonzero(finite_diff_hvp(lambda: [alpha * 0], [alpha],
                                               [torch.zeros_like(alpha)])[0]) == 0


def test_ggn_rank1_equals_outer_product_matrix():
    torch.manual_seed(0)
    g = [torch.randn(5, 8), torch.randn(5, 8)]
    v = [torch.randn(5, 8), torch.randn(5, 8)]
    matrix = torch.outer(_flat(g), _flat(g))
    got = _flat(ggn_hvp([g], v))
    assert torch.allclose(got, matrix @ _flat(v), rtol=1e-5, atol=1e-5)
    assert float(dot(v, ggn_hvp([g], v))) >= 0  # PSD


def test_ggn_microbatch_equals_outer_product_matrix():
    alpha, loss = _smooth_toy()
    m = 4
    samples = chunk_gradients(loss, 16, [alpha], m)
    assert len(samples) == m
    reference = [torch.autograd.grad(loss(4 * c, 4 * c + 4), [alpha])[0] for c in range(m)]
    for got, ref in zip(samples, reference):
        assert torch.allclose(got[0], ref)
    matrix = sum(torch.outer(r.reshape(-1), r.reshape(-1)) for r in reference) / m
    v = [torch.randn_like(alpha)]
    got = ggn_hvp(samples, v)[0].reshape(-1)
    assert torch.allclose(got, matrix @ v[0].reshape(-1), rtol=1e-10, atol=1e-12)
    assert float(dot(v, ggn_hvp(samples, v))) >= 0


# -- tangent distances ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["fro", "l1", "cosine"])
def test_tangent_distance_gradient_is_twice_the_direction(kind):
    """v = ½∇_g D, so that the modified α gradient is g + 2λ·H·v for every distance."""
    torch.manual_seed(0)
    g = [torch.randn(5, 8, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    t = [torch.randn(5, 8, dtype=torch.float64) for _ in range(2)]
    d = tangent_distance(g, t, kind)
    grad = torch.autograd.grad(d, g)
    v = distance_direction(g, t, kind)
    for a, b in zip(grad, v):
        assert torch.allclose(a, 2 * b, atol=1e-12)
    gd = [a.detach() for a in g]
    if kind == "fro":
        assert torch.allclose(d, sum(((a - b) ** 2).sum() for a, b in zip(gd, t)))
        assert all(torch.equal(a, b - c) for a, b, c in zip(v, gd, t))
    elif kind == "l1":
        assert all(torch.equal(a, torch.sign(b - c) / 2) for a, b, c in zip(v, gd, t))
    else:
        cos = dot(gd, t) / (_flat(gd).norm() * _flat(t).norm())
        assert torch.allclose(d, 1 - cos)
        assert abs(float(dot(v, gd))) < 1e-10  # the cosine direction is orthogonal to g
        zero = [torch.zeros(5, 8, dtype=torch.float64)] * 2
        assert all(torch.count_nonzero(a) == 0 for a in distance_direction(zero, t, kind))


def test_tangent_ema():
    ema = TangentEMA(decay=0.5)
    ema.update([torch.ones(2)])
    ema.update([torch.zeros(2)])
    assert torch.allclose(ema.value[0], torch.full((2,), 0.5)) and ema.updates == 2
    other = TangentEMA(decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.value[0], ema.value[0])


# -- decoupled optimization -----------------------------------------------------------------------
def test_decoupled_backtrack_and_psi_update_on_tensors():
    torch.manual_seed(0)
    e, m, eta, psi_lr = 6, 4, 0.01, 0.1
    norms = torch.tensor([5.0, 1.0, 3.0, 0.5, 4.0, 2.0])
    mask = dec.backtrack_mask(norms, 0.5)  # τ = 3: the 3 largest norms (edges 0, 2, 4)
    assert mask.tolist() == [True, False, True, False, True, False]
    alpha_prev = torch.randn(e, m)
    alpha_new = alpha_prev - 0.1 * torch.randn(e, m)
    psi = torch.rand(e, m) + 0.5
    state = dec.DecoupledState(psi=[psi.clone()])
    a = nn.Parameter(alpha_new.clone())
    dec.backtrack_(state, [a], [alpha_prev], [norms], eta, 0.5)
    moved = alpha_new + eta * psi * alpha_prev
    assert torch.allclose(a[mask], moved[mask])
    assert torch.equal(a.detach()[~mask], alpha_new[~mask])  # low-norm edges untouched
    # ψ̃ update: ∂L/∂ψ̃ = η·mask⊙g⊙α_prev (autograd through α_used = α_new + η·ψ̃⊙α_prev)
    g = torch.randn(e, m)
    psi_var = psi.clone().requires_grad_(True)
    used = alpha_new + eta * mask[:, None] * psi_var * alpha_prev
    (auto,) = torch.autograd.grad((g * used).sum(), psi_var)
    assert torch.allclose(dec.psi_gradient(g, alpha_prev, mask, eta), auto)
    dec.update_psi(state, [g], psi_lr)
    assert torch.allclose(state.psi[0], (psi - psi_lr * auto).abs())
    assert torch.equal(state.psi[0][~mask], psi[~mask])
    assert (state.psi[0] >= 0).all()


def test_edge_weight_norms_pool_conv_weights_per_cell_type():
    torch.manual_seed(0)
    net = _space().build_supernet((1, 8, 8), 3, XnorBinarizer())
    norms = dec.EdgeWeightNorms(net)()
    assert set(norms) == {"normal", "reduce"} and norms["normal"].shape == (5,)
    for kind in ("normal", "reduce"):
        ws = [m.weight for c in net.cells if (c.reduction == (kind == "reduce"))
              for m in c.edges[3].modules() if isinstance(m, nn.Conv2d)]
        expected = sum(float((w.detach() ** 2).sum()) for w in ws) / sum(w.numel() for w in ws)
        assert norms[kind][3].item() == pytest.approx(expected, rel=1e-5)
    assert dec.arch_parameter_kinds(net, net.arch_parameters()) == ["normal", "reduce"]


@pytest.mark.parametrize("eta_mode", ["lr_product", "unit"])
def test_strategy_decoupled_moves_only_high_norm_edges_by_eta_psi_alpha(splits, tmp_path,
                                                                         eta_mode):
    plain = _strategy(splits, tmp_path, lambda_tangent=0.0, mu_rec=0.0, psi_init=0.0)
    backed = _strategy(splits, tmp_path, lambda_tangent=0.0, mu_rec=0.0, eta_mode=eta_mode,
                       psi_init=0.5)
    assert all(torch.equal(p, torch.full_like(p, 0.5)) for p in backed.psi["child"].psi)
    prev = [a.detach().clone() for a in backed.child_bl.alphas]
    xv, yv = _val_batch(splits)
    plain.child_arch_step(xv, yv)
    backed.child_arch_step(xv, yv)
    eta = 0.5 * (1.0 if eta_mode == "unit"
                 else backed.config.arch_lr * backed.child_bl.w_opt.param_groups[0]["lr"])
    norms = backed.edge_norms["child"]()
    for a0, a1, p, kind in zip(plain.child_bl.alphas, backed.child_bl.alphas, prev,
                               backed.arch_kinds["child"]):
        mask = dec.backtrack_mask(norms[kind], 0.5)
        diff = (a1 - a0).detach()
        assert torch.equal(diff[~mask], torch.zeros_like(diff[~mask]))
        assert torch.allclose(diff[mask], eta * p[mask], rtol=1e-3, atol=1e-9)
        assert mask.sum() == len(mask) - len(mask) // 2
    # the logged effect: ‖backtrack‖ / ‖Adam step‖ on the backtracked rows
    back, step = backed.effects["backtrack_norm"][0], backed.effects["adam_step_norm"][0]
    assert back == pytest.approx(float(torch.cat(
        [(eta * p[dec.backtrack_mask(norms[k], 0.5)]).reshape(-1)
         for p, k in zip(prev, backed.arch_kinds["child"])]).norm()), rel=1e-4)
    assert step > 0


# -- the Child's α gradient -----------------------------------------------------------------------
@pytest.mark.parametrize("tangent", [True, False])
def test_child_step_is_first_order_darts_on_kl_without_extras(splits, tmp_path, tangent):
    strategy = _strategy(splits, tmp_path, lambda_tangent=0.0, mu_rec=0.0, decoupled=False,
                         tangent=tangent)
    cfg = strategy.config
    twin = copy.deepcopy(strategy.child)
    bl = BilevelOptimizer(twin, torch.optim.SGD(twin.weight_parameters(), lr=cfg.lr),
                          ArchConfig(lr=cfg.arch_lr, beta1=cfg.arch_beta1, beta2=cfg.arch_beta2,
                                     weight_decay=cfg.arch_weight_decay),
                          val_loss=ParentKL(strategy.parent))
    xv, yv = _val_batch(splits)
    info = strategy.child_arch_step(xv, yv)
    bl.arch_step(xv, yv, xv, yv)
    assert ("distance" in info) == tangent
    for a, b in zip(strategy.child_bl.alphas, bl.alphas):
        assert not torch.equal(a, torch.zeros_like(a))
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_tangent_term_is_two_lambda_hessian_times_g_minus_t(splits, tmp_path):
    lam = 0.5
    strategy = _strategy(splits, tmp_path, lambda_tangent=lam, hessian="exact", decoupled=False,
                         tangent_max_ratio=0.0)  # the uncapped term (the cap: test below)
    strategy.parent.double()
    strategy.child.double()
    child, parent = strategy.child, strategy.parent
    xv, yv = _val_batch(splits)
    xv, yv = xv[:4].double(), yv[:4]
    # independent references: g (KL to the eval-mode Parent), t (Parent CE, eval), dense H
    with torch.no_grad():
        parent.eval()
        probs = torch.softmax(parent(xv), 1)
        parent.train()

    def kl(logits):
        return F.kl_div(F.log_softmax(logits, 1), probs, reduction="batchmean")

    with frozen_batchnorm_stats(child):
        g = torch.autograd.grad(kl(child(xv)), child.arch_parameters())
    parent.eval()
    t = torch.autograd.grad(F.cross_entropy(parent(xv), yv), parent.arch_parameters())
    parent.train()
    dense = _hessian_of(child, xv, kl)  # J of the surrogate gradient: H v = Jᵀ v (see above)
    assert not torch.allclose(dense, dense.T)  # straight-through signs: J is not symmetric
    expected = 2 * lam * (dense.T @ (_flat(g) - _flat(t)))

    total, info = strategy.child_arch_gradients(xv, yv)
    assert torch.allclose(_flat(info["g"]), _flat(g), atol=1e-12)
    assert torch.allclose(_flat(info["t"]), _flat(t), atol=1e-12)
    got = _flat(total) - _flat(g)
    assert expected.norm() > 0
    assert (got - expected).norm() / expected.norm() <= 1e-6  # float64: "exactly"
    # GGN rank-1 on the same batch: 2λ·g(gᵀ(g − t)), a rescaled g
    strategy.config = DcpNasConfig(**{**_config_dict(strategy.config), "hessian": "ggn",
                                      "ggn_mode": "rank1"})
    total, _ = strategy.child_arch_gradients(xv, yv)
    gf, tf = _flat(g), _flat(t)
    assert torch.allclose(_flat(total), gf + 2 * lam * gf * (gf @ (gf - tf)), atol=1e-10)
    # per-sample GGN (the default): 2λ·(1/B)Σ g_x g_xᵀ(g − t), with g_x the per-sample
    # gradients of the same (train-mode BN) forward, checked through their sum and direction
    # (a larger λ: per-sample curvature at a near-uniform α is small, see docs/algorithms.md)
    lam = 500.0
    strategy.config = DcpNasConfig(**{**_config_dict(strategy.config), "hessian": "ggn",
                                      "ggn_mode": "per_sample", "lambda_tangent": lam})
    total, info = strategy.child_arch_gradients(xv, yv)
    extra = _flat(total) - gf
    assert torch.allclose(extra, 2 * lam * _flat(info["hv"]), atol=1e-12)
    assert float(_flat(info["hv"]) @ (gf - tf)) > 0  # PSD: a descent direction of ‖g − t‖²
    cos = float(_flat(total) @ gf / (_flat(total).norm() * gf.norm()))
    assert cos < 0.999  # not a rescaled g
    assert strategy.effects["tangent_ratio"][-1] == pytest.approx(
        float(extra.norm() / gf.norm()), rel=1e-6)


def test_tangent_cap_scales_the_term_to_max_ratio_of_g(splits, tmp_path):
    """``tangent_max_ratio``: a term over the cap is scaled to exactly ``max_ratio·‖g‖``, its
    direction kept; under the cap it is untouched (both against the uncapped run)."""
    xv, yv = _val_batch(splits)
    uncapped = _strategy(splits, tmp_path, lambda_tangent=5.0, hessian="exact", decoupled=False,
                         tangent_max_ratio=0.0)
    _, info = uncapped.child_arch_gradients(xv, yv)
    g, hv = _flat(info["g"]), _flat(info["hv"])
    ratio = float(2 * 5.0 * hv.norm() / g.norm())
    assert ratio > 0
    for cap in (ratio / 2, ratio * 2):
        capped = _strategy(splits, tmp_path, lambda_tangent=5.0, hessian="exact",
                           decoupled=False, tangent_max_ratio=cap)
        capped.child.load_state_dict(uncapped.child.state_dict())
        total, _ = capped.child_arch_gradients(xv, yv)
        term = _flat(total) - g
        assert float(term.norm() / g.norm()) == pytest.approx(min(cap, ratio), rel=1e-4)
        assert float(term @ hv / (term.norm() * hv.norm())) == pytest.approx(1.0, abs=1e-5)
        assert capped.effects["tangent_ratio_uncapped"][-1] == pytest.approx(ratio, rel=1e-4)


def _config_dict(cfg: DcpNasConfig) -> dict:
    import attrs

    return attrs.asdict(cfg)


@pytest.mark.parametrize("overrides", [
    {"hessian": "finite_diff"},
    {"ggn_mode": "microbatch", "ggn_microbatches": 2},
    {"tangent_mode": "ema", "tangent_distance": "cosine"},
    {"tangent_distance": "l1", "child_ce_weight": 0.5},
])
def test_child_step_variants_move_alpha_and_keep_weights(splits, tmp_path, overrides):
    strategy = _strategy(splits, tmp_path, **overrides)
    w0 = [p.detach().clone() for p in strategy.child.weight_parameters()]
    bn_keys = [k for k in strategy.child.state_dict() if "running" in k]
    a0 = [a.detach().clone() for a in strategy.child_bl.alphas]
    xv, yv = _val_batch(splits)
    info = strategy.child_arch_step(xv, yv)
    assert "hv" in info and all(torch.isfinite(h).all() for h in info["hv"])
    assert any(not torch.equal(a, b) for a, b in zip(a0, strategy.child_bl.alphas))
    assert all(torch.equal(w, p) for w, p in zip(w0, strategy.child.weight_parameters()))
    state = strategy.child.state_dict()
    if overrides.get("hessian") == "finite_diff" or "ggn_mode" in overrides:
        # the extra passes leave the BN statistics as one α step would
        ref = _strategy(splits, tmp_path, hessian="ggn")
        ref.child_arch_step(xv, yv)
        for k in bn_keys:
            assert torch.allclose(state[k], ref.child.state_dict()[k])


def test_tangent_direction_is_the_parent_ce_gradient():
    torch.manual_seed(0)
    net = _space("real").build_supernet((1, 8, 8), 3, NoBinarizer())
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,))
    net.eval()
    t, logits, loss = tangent_direction(net, net.arch_parameters(), x, y)
    ref = torch.autograd.grad(F.cross_entropy(net(x), y), net.arch_parameters())
    assert all(torch.allclose(a, b) for a, b in zip(t, ref))
    assert not logits.requires_grad and torch.allclose(loss, F.cross_entropy(logits, y))


# -- the strategy through the Strategy API --------------------------------------------------------
def test_alternate_run_inherits_architectures_and_derives(splits, tmp_path):
    strategy = _strategy(splits, tmp_path)
    assert strategy.num_epochs() == 2
    for a, b in zip(strategy.parent_bl.alphas, strategy.child_bl.alphas):
        assert torch.equal(a, b)  # α̂ := α at the start
    seen = []
    real_step = strategy.child_arch_step

    def spy(xv, yv):
        seen.append([torch.equal(a, b) for a, b in zip(strategy.child_bl.alphas,
                                                       strategy.parent_bl.alphas)])
        return real_step(xv, yv)

    strategy.child_arch_step = spy
    phases = []
    for epoch in range(strategy.num_epochs()):
        metrics = strategy.run_epoch(epoch)
        phases.append(metrics["phase"])
        assert {"phase", "parent_val_acc", "child_val_acc", "kl", "recon_loss", "alpha_entropy",
                "train_loss", "train_acc"} <= set(metrics)
        assert all(isinstance(v, float) for v in metrics.values())
    assert phases == [PHASE_PARENT, PHASE_CHILD]
    assert "tangent_distance" in metrics
    assert all(seen[0])  # the first Child step starts from the Parent's architecture
    genotype = strategy.derive()
    _space().validate_genotype(genotype)
    assert genotype == strategy.child.genotype()
    assert strategy.final_metrics() == {"tangent": 1.0, "hessian": 0.0, "decoupled": 1.0}


def test_interleaved_run_shares_the_architecture(splits, tmp_path):
    strategy = _strategy(splits, tmp_path, schedule="interleaved", inherit_weights=True,
                         tangent_mode="ema")
    assert strategy.num_epochs() == 1
    seen = []
    real_step = strategy.child_arch_step

    def spy(xv, yv):  # every Child step starts from the architecture the Parent just stepped
        seen.append(all(torch.equal(a, b) for a, b in zip(strategy.child_bl.alphas,
                                                          strategy.parent_bl.alphas)))
        return real_step(xv, yv)

    strategy.child_arch_step = spy
    metrics = strategy.run_epoch(0)
    assert seen == [True, True]
    assert metrics["phase"] == PHASE_INTERLEAVED and "parent_train_loss" in metrics
    assert "tangent_distance" in metrics and strategy.ema.updates >= 2
    _space().validate_genotype(strategy.derive())
    assert strategy.child_weights_inherited
    assert strategy.final_metrics() == {"tangent": 1.0, "hessian": 0.0, "decoupled": 1.0}
    exact = _strategy(splits, tmp_path, hessian="exact", tangent=False)
    assert exact.final_metrics() == {"tangent": 0.0, "hessian": 1.0, "decoupled": 1.0}


def test_state_dict_round_trip_resumes_identically(splits, tmp_path):
    kw = dict(tangent_mode="ema", rounds=2)
    strategy = _strategy(splits, tmp_path, **kw)
    strategy.run_epoch(0)
    buf = io.BytesIO()
    torch.save(strategy.state_dict(), buf)
    buf.seek(0)
    other = _strategy(splits, tmp_path, **kw)
    other.load_state_dict(torch.load(buf, weights_only=False))
    assert other.ema.value is not None and other.psi["parent"].alpha_prev is not None
    for a, b in zip(other.ema.value, strategy.ema.value):
        assert torch.equal(a, b)
    assert other.position == strategy.position
    assert other.derive() == strategy.derive()
    m1, m2 = strategy.run_epoch(1), other.run_epoch(1)
    for a, b in zip(strategy.child_bl.alphas, other.child_bl.alphas):
        assert torch.equal(a, b)
    for a, b in zip(strategy.psi["child"].psi, other.psi["child"].psi):
        assert torch.equal(a, b)
    assert m1["child_val_acc"] == m2["child_val_acc"]


def test_check_compatible_refuses_a_real_binarizer():
    strategy = DcpNasStrategy()
    reason = strategy.check_compatible(_space(), NoBinarizer())
    assert reason and "\n" not in reason and "1-bit" in reason
    assert strategy.check_compatible(_space(), XnorBinarizer()) is None


def test_conforms_with_a_binary_binarizer():
    testing = pytest.importorskip("automl_bin.testing")
    report = testing.check_strategy(DcpNasStrategy, binarizer="xnor")
    assert any("changes the architecture" in c for c in report.checks)


# -- effect sizes logged by a tiny tracked run ------------------------------------------------------
def test_tiny_run_logs_effect_sizes_and_alpha_progress(tmp_path):
    """A tracked DCP-NAS run logs tangent_ratio, tangent_cos, decoupled_ratio (Child phases),
    alpha_margin and argmax_changes (every epoch) and weight_images."""
    from automl_bin.testing import run_recipe, tiny_recipe_text

    text = tiny_recipe_text("dcp_nas", binarizer="xnor", retrain=False, strategy_params=dict(
        warmup_epochs=0, rounds=2, parent_epochs=1, child_epochs=1, max_steps=2,
        lambda_tangent=1e-9, arch_lr=0.05))
    run = run_recipe(tmp_path, text)
    epochs = len(run.metrics("search", "alpha_entropy"))
    assert epochs == 4
    assert len(run.metrics("search", "alpha_margin")) == epochs
    assert len(run.metrics("search", "argmax_changes")) == epochs
    assert all(m >= 0 for m in run.metrics("search", "alpha_margin"))
    ratios = run.metrics("search", "tangent_ratio")
    assert len(ratios) == 2 and all(0 < r < 1e-3 for r in ratios)  # λ = 1e-9: inert
    assert len(run.metrics("search", "tangent_cos")) == 2
    assert all(r > 0 for r in run.metrics("search", "decoupled_ratio"))
    # weight_images counts the Child's weight steps: 2 Child epochs x 2 steps x 16 images
    assert run.metrics("search", "weight_images")[-1] == 2 * 2 * 16


def test_inert_tangent_warns_once_naming_the_key(splits, tmp_path):
    strategy = _strategy(splits, tmp_path, lambda_tangent=1e-12, rounds=2, decoupled=False)
    for epoch in range(strategy.num_epochs()):
        strategy.run_epoch(epoch)
    warnings = [m for m in strategy.env.reporter.messages if m.startswith("Warning:")]
    assert len(warnings) == 1 and "lambda_tangent" in warnings[0]
