"""The Fisher/GGN products of DCP-NAS against explicit references (float64, tiny supernets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from automl_bin.search.hvp import frozen_batchnorm_stats, gauss_newton_hvp, softmax_output_hvp
from automl_bin.search.per_sample import fisher_hvp, record_mixed_ops
from automl_bin_plugins.binarizers.none import NoBinarizer
from automl_bin_plugins.binarizers.xnor import XnorBinarizer
from automl_bin_plugins.darts_space.space import DartsConfig, DartsSpace

B = 6


def _net(binary: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    space = DartsSpace(DartsConfig(layers=2, init_channels=4, nodes=2, stem_multiplier=1,
                                   ops="binary" if binary else "real"))
    net = space.build_supernet((1, 8, 8), 3, XnorBinarizer() if binary else NoBinarizer())
    net = net.double()
    with torch.no_grad():  # away from the symmetric start
        for a in net.arch_parameters():
            a.normal_(0, 0.5)
    x = torch.randn(B, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (B,))
    return net, x, y


def _flat(ts) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def _per_sample(net, x, y):
    alphas = net.arch_parameters()
    with record_mixed_ops(net) as rec:
        loss = F.cross_entropy(net(x), y)
    g = torch.autograd.grad(loss, alphas, retain_graph=True)
    return g, rec.contributions(alphas)


def test_per_sample_gradients_equal_separate_backward_passes():
    """BN in eval mode (no coupling): B·c_x equals the gradient of sample x alone."""
    net, x, y = _net()
    net.eval()
    _, contrib = _per_sample(net, x, y)
    alphas = net.arch_parameters()
    for i in range(B):
        ref = torch.autograd.grad(F.cross_entropy(net(x[i:i + 1]), y[i:i + 1]), alphas)
        got = [B * c[i] for c in contrib]
        rel = (_flat(got) - _flat(ref)).norm() / _flat(ref).norm()
        assert rel <= 1e-6, (i, float(rel))


def test_per_sample_contributions_sum_to_batch_gradient_with_train_bn():
    """BN in train mode couples the samples; the contributions still sum to ∇_α L (1-bit too)."""
    for binary in (False, True):
        net, x, y = _net(binary)
        net.train()
        with frozen_batchnorm_stats(net):
            g, contrib = _per_sample(net, x, y)
        total = [c.sum(0) for c in contrib]
        rel = (_flat(total) - _flat(g)).norm() / _flat(g).norm()
        assert rel <= 1e-6, (binary, float(rel))


def test_fisher_hvp_equals_explicit_outer_products():
    net, x, y = _net()
    net.eval()
    _, contrib = _per_sample(net, x, y)
    v = [torch.randn_like(a) for a in net.arch_parameters()]
    g = torch.stack([B * _flat([c[i] for c in contrib]) for i in range(B)])  # (B, P)
    expected = (g.T @ g / B) @ _flat(v)
    got = _flat(fisher_hvp(contrib, v))
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)
    # and it is not a rescaled batch gradient (what the rank-1 estimate returns)
    gb = g.mean(0)
    cos = float(got @ gb / (got.norm() * gb.norm()))
    assert abs(cos) < 0.999


def test_gauss_newton_equals_explicit_jt_h_j():
    """Jᵀ H_out J v by two vjps = the dense Jᵀ (diag(p) − ppᵀ)/B J v, BN in eval mode."""
    net, x, y = _net()
    net.eval()
    alphas = net.arch_parameters()
    v = [torch.randn_like(a) for a in alphas]
    logits = net(x)
    got = gauss_newton_hvp(logits, alphas, v, lambda u: softmax_output_hvp(logits, u, 1.0 / B))
    names = [n for n, p in net.named_parameters() if any(p is a for a in alphas)]
    sizes, shapes = [a.numel() for a in alphas], [a.shape for a in alphas]

    def f(flat):
        parts = [p.reshape(s) for p, s in zip(flat.split(sizes), shapes)]
        return torch.func.functional_call(net, dict(zip(names, parts)), (x,))

    jac = torch.autograd.functional.jacobian(f, _flat([a.detach() for a in alphas]))  # (B,K,P)
    p = torch.softmax(logits.detach(), 1)
    h_out = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    dense = torch.einsum("bkp,bkl,blq->pq", jac, h_out, jac) / B
    expected = dense @ _flat(v)
    rel = (_flat(got) - expected).norm() / expected.norm()
    assert rel <= 1e-6, float(rel)
