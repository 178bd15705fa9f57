"""The ``gdas`` strategy: one Gumbel-sampled op per edge, straight through, τ annealed.

Its conformance (resume, genotype, metrics) is checked with every built-in strategy in
``tests/test_conformance.py``.
"""

from __future__ import annotations

import collections

import pytest
import torch
import torch.nn.functional as F

from automl_bin.testing import tiny_search_env
from automl_bin_plugins.darts_space.space import DartsSpace
from automl_bin_plugins.strategies.gdas import GdasConfig, GdasStrategy, temperature


def _gdas(seed: int = 0, **config) -> GdasStrategy:
    torch.manual_seed(seed)
    strategy = GdasStrategy(GdasConfig(**{"epochs": 2, "max_steps": 2, **config}))
    strategy.setup(tiny_search_env(seed=seed))
    return strategy


def test_samples_are_one_hot_and_alpha_gets_a_gradient():
    strategy = _gdas()
    net = strategy.supernet
    x, y = next(iter(strategy.env.splits["val"].batches(0)))
    weights = strategy.sample()
    for kind, w in weights.items():
        assert w.shape == net.alphas()[kind].shape and w.requires_grad
        chosen = w.detach().argmax(-1, keepdim=True)
        others = w.detach().scatter(-1, chosen, 0.0)
        assert torch.equal(others, torch.zeros_like(others))  # exactly 0: those ops never run
        assert torch.allclose(w.detach().gather(-1, chosen), torch.ones_like(chosen, dtype=w.dtype))
    with net.mixing(weights):
        loss = F.cross_entropy(net(x), y)
    loss.backward()
    for kind, alpha in net.alphas().items():
        assert alpha.grad is not None and torch.isfinite(alpha.grad).all()
        assert alpha.grad.abs().sum() > 0, kind


def test_a_fixed_architecture_gives_alpha_no_gradient_unlike_mixing():
    """The contrast the mixing override exists for: set_fixed_architecture is a constant path."""
    strategy = _gdas()
    net = strategy.supernet
    x, y = next(iter(strategy.env.splits["val"].batches(0)))
    net.set_fixed_architecture(net.genotype())
    F.cross_entropy(net(x), y).backward()
    assert all(a.grad is None for a in net.alphas().values())
    net.set_fixed_architecture(None)


def test_only_the_sampled_op_of_each_edge_runs():
    strategy = _gdas()
    net = strategy.supernet
    structure = net.cell_structure()
    calls: collections.Counter = collections.Counter()
    for cell_type in structure:
        for e in range(cell_type.num_edges):
            for c, ops in enumerate(net.candidate_ops(cell_type.name, e)):
                for m, op in enumerate(ops):
                    key = (cell_type.name, e, c, m)
                    op.register_forward_hook(lambda *_, key=key: calls.update([key]))
    x, _ = next(iter(strategy.env.splits["train"].batches(0)))
    net(x)  # the softmax mixture runs every op once: the hooks count
    total_ops = sum(len(ops) for t in structure for e in range(t.num_edges)
                    for ops in net.candidate_ops(t.name, e))
    assert len(calls) == total_ops and set(calls.values()) == {1}
    calls.clear()
    weights = strategy.sample()
    with net.mixing(weights):
        net(x)
    expected = {(t.name, e, c, int(weights[t.name][e].argmax()))
                for t in structure for e in range(t.num_edges)
                for c in range(len(net.candidate_ops(t.name, e)))}
    assert set(calls) == expected and set(calls.values()) == {1}


def test_temperature_anneals_linearly_from_tau_max_to_tau_min():
    assert temperature(0, 5, 10.0, 0.1) == 10.0
    assert temperature(4, 5, 10.0, 0.1) == 0.1
    assert temperature(2, 5, 10.0, 0.1) == pytest.approx(5.05)
    assert temperature(0, 1, 10.0, 0.1) == 10.0
    strategy = _gdas(epochs=3, max_steps=1)
    assert [strategy.run_epoch(e)["tau"] for e in range(3)] == [10.0, pytest.approx(5.05), 0.1]
    with pytest.raises(ValueError, match="tau_min"):
        GdasConfig(tau_max=0.5, tau_min=1.0)


def test_same_seed_same_search():
    runs = []
    for _ in range(2):
        strategy = _gdas(seed=3)
        for epoch in range(2):
            strategy.run_epoch(epoch)
        runs.append((strategy.derive(), [a.detach().clone() for a in
                                         strategy.supernet.arch_parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    first = [_gdas(seed=s).sample() for s in (0, 1)]
    assert any(not torch.equal(first[0][k], first[1][k]) for k in first[0])


def test_a_space_without_cells_and_mixing_is_refused():
    class Opaque(DartsSpace):
        capabilities = frozenset()

    space = Opaque(DartsSpace.Config(layers=2, init_channels=4, nodes=2))
    reason = GdasStrategy().check_compatible(space, None)
    assert "['cells', 'mixing']" in reason
    with pytest.raises(ValueError, match="gdas cannot run"):
        GdasStrategy(GdasConfig(epochs=1)).setup(tiny_search_env(space=space))
