"""The DARTS bilevel step: which parameters each half moves, and the second-order term."""

from __future__ import annotations

import torch
from torch import nn

from automl_bin.interfaces import Genotype
from automl_bin.interfaces.supernet import Supernet
from automl_bin.search.bilevel import ArchConfig, BilevelOptimizer
from automl_bin_plugins.binarizers.none import NoBinarizer
from automl_bin_plugins.darts_space.space import DartsConfig, DartsSpace


def _setup(order: int):
    torch.manual_seed(0)
    space = DartsSpace(DartsConfig(layers=2, init_channels=4, nodes=2, stem_multiplier=1))
    net = space.build_supernet((1, 8, 8), 3, NoBinarizer())
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    bl = BilevelOptimizer(net, opt, ArchConfig(lr=0.01), order=order)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
    return net, bl, x, y


def test_arch_step_moves_only_alphas():
    net, bl, x, y = _setup(1)
    w0 = [p.detach().clone() for p in net.weight_parameters()]
    a0 = [a.detach().clone() for a in net.arch_parameters()]
    bl.arch_step(x, y, x, y)
    assert any(not torch.equal(a, b) for a, b in zip(a0, net.arch_parameters()))
    assert all(torch.equal(w, p) for w, p in zip(w0, net.weight_parameters()))


def test_weight_step_moves_only_weights():
    net, bl, x, y = _setup(1)
    a0 = [a.detach().clone() for a in net.arch_parameters()]
    w0 = [p.detach().clone() for p in net.weight_parameters()]
    bl.weight_step(x, y)
    assert all(torch.equal(a, b) for a, b in zip(a0, net.arch_parameters()))
    assert any(not torch.equal(w, p) for w, p in zip(w0, net.weight_parameters()))


def test_second_order_restores_weights_and_differs_from_first():
    """The unrolled gradient leaves w unchanged and adds a non-zero correction term."""
    net, bl2, x, y = _setup(2)
    bl2.weight_step(x, y)  # fill the momentum buffer used by the virtual step
    w0 = [p.detach().clone() for p in net.weight_parameters()]
    g2, _ = bl2.arch_gradients(x, y, x, y)
    assert all(torch.equal(w, p) for w, p in zip(w0, net.weight_parameters()))
    bl2.order = 1
    g1, _ = bl2.arch_gradients(x, y, x, y)
    assert all(a.shape == b.shape for a, b in zip(g1, g2))
    assert any(not torch.allclose(a, b) for a, b in zip(g1, g2))


class _Smooth(Supernet):
    """A smooth float64 toy 'supernet' where finite differences are a valid reference."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.w = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
        self.alpha = nn.Parameter(torch.randn(3, dtype=torch.float64))

    def arch_parameters(self):
        return [self.alpha]

    def forward(self, x):
        return torch.tanh(x @ self.w) * torch.softmax(self.alpha, 0)

    def genotype(self) -> Genotype:
        raise NotImplementedError

    def op_weights(self):
        return {"toy": torch.softmax(self.alpha, 0).detach()[None]}

    def set_fixed_architecture(self, genotype):
        raise NotImplementedError


def test_finite_difference_hvp_matches_double_backward_on_smooth_toy():
    """The FD mixed second derivative ∇²_{α,w} L · v equals autograd's exact product."""
    net = _Smooth()
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    bl = BilevelOptimizer(net, opt, ArchConfig(), order=2, fd_eps=1e-4)
    x = torch.randn(16, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    v = [torch.randn_like(net.w)]
    fd = bl._finite_difference_hvp(v, x, y)[0]
    loss = nn.functional.cross_entropy(net(x), y)
    g_w = torch.autograd.grad(loss, [net.w], create_graph=True)[0]
    exact = torch.autograd.grad((g_w * v[0]).sum(), [net.alpha])[0]
    assert torch.allclose(fd, exact, rtol=1e-4, atol=1e-7)
