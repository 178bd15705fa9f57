"""The darts search space: supernet, single-path mode, derived networks, genotype checks."""

from __future__ import annotations

import random

import pytest
import torch

from automl_bin.interfaces import Cell, Edge, Genotype
from automl_bin_plugins.binarizers.none import NoBinarizer
from automl_bin_plugins.darts_space.space import DartsConfig, DartsSpace

SHAPE = (1, 8, 8)


@pytest.fixture
def space() -> DartsSpace:
    return DartsSpace(DartsConfig(layers=3, init_channels=4, nodes=2, stem_multiplier=1))


def test_supernet_forward_and_parameter_partition(space):
    """Logits have the class count; arch and weight parameters partition parameters()."""
    torch.manual_seed(0)
    net = space.build_supernet(SHAPE, 5, NoBinarizer())
    assert net(torch.randn(2, *SHAPE)).shape == (2, 5)
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    assert arch and weights and not arch & weights
    assert arch | weights == {id(p) for p in net.parameters()}
    assert net.alphas_normal.shape == (5, len(space.op_names))  # 2 nodes -> 5 edges
    assert float(net.alphas_normal.detach().abs().max()) < 0.01  # 1e-3 * N(0, 1) init


def test_genotype_follows_alphas(space):
    """Pushing one op's alpha up makes the derived genotype choose it everywhere it can."""
    net = space.build_supernet(SHAPE, 3, NoBinarizer())
    col = space.op_names.index("sep_conv_3x3")
    with torch.no_grad():
        net.alphas_normal[:, col] += 5.0
    g = net.genotype()
    assert g.space == "darts"
    assert all(e.op == "sep_conv_3x3" for e in g.cell("normal").edges)
    assert len(g.cell("normal").edges) == 4  # two per node
    space.validate_genotype(g)


def test_fixed_architecture_runs_one_path(space):
    """In single-path mode only the chosen ops receive gradients."""
    torch.manual_seed(0)
    net = space.build_supernet(SHAPE, 3, NoBinarizer())
    g = Genotype(space="darts", cells={
        k: Cell(edges=[Edge("sep_conv_3x3", 0, 2), Edge("dil_conv_3x3", 1, 2),
                       Edge("sep_conv_3x3", 0, 3), Edge("skip_connect", 2, 3)], concat=[2, 3])
        for k in ("normal", "reduce")})
    net.set_fixed_architecture(g)
    net(torch.randn(2, *SHAPE)).sum().backward()
    cell = net.cells[0]
    ops = space.op_names
    used = cell.edges[0].mixed.ops[ops.index("sep_conv_3x3")]
    unused = cell.edges[0].mixed.ops[ops.index("sep_conv_5x5")]
    dropped_edge = cell.edges[3].mixed.ops[ops.index("sep_conv_3x3")]  # edge 1->3 not in genotype
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in used.parameters())
    assert all(p.grad is None for p in unused.parameters())
    assert all(p.grad is None for p in dropped_edge.parameters())
    assert net.alphas_normal.grad is None
    net.set_fixed_architecture(None)
    net.zero_grad()
    net(torch.randn(2, *SHAPE)).sum().backward()
    assert net.alphas_normal.grad is not None


def test_sampled_genotypes_build_networks(space):
    """Random genotypes are valid and their networks train (aux head and drop path too)."""
    rng = random.Random(1)
    for _ in range(3):
        g = space.sample_genotype(rng)
        space.validate_genotype(g)
        net = space.build_network(g, SHAPE, 4, NoBinarizer(),
                                  {"layers": 3, "init_channels": 4, "auxiliary": True})
        net.set_drop_path(0.2)
        net.train()
        logits, aux = net(torch.randn(3, *SHAPE))
        assert logits.shape == aux.shape == (3, 4)
        net.eval()
        assert net(torch.randn(3, *SHAPE)).shape == (3, 4)


def test_validate_genotype_errors(space):
    with pytest.raises(ValueError, match="unknown op"):
        space.validate_genotype(Genotype(space="darts", cells={
            "normal": {"edges": [["conv_7x7", 0, 2]], "concat": [2]},
            "reduce": {"edges": [["skip_connect", 0, 2]], "concat": [2]}}))
    with pytest.raises(ValueError, match="no edge feeds"):
        space.validate_genotype(Genotype(space="darts", cells={
            "normal": {"edges": [["skip_connect", 0, 2]], "concat": [2, 3]},
            "reduce": {"edges": [["skip_connect", 0, 2]], "concat": [2]}}))
    with pytest.raises(ValueError, match="search space 'other'"):
        space.validate_genotype(Genotype(space="other", cells={}))


def test_op_list_validation():
    from automl_bin.config import structure
    from automl_bin.errors import UsageError

    cfg = structure(DartsConfig, {"ops": ["none", "skip_connect", "sep_conv_3x3"]}, "search_space")
    assert DartsSpace(cfg).op_names == ("none", "skip_connect", "sep_conv_3x3")
    with pytest.raises(UsageError, match="unknown op"):
        structure(DartsConfig, {"ops": ["sep_conv_9x9"]}, "search_space")
    with pytest.raises(UsageError, match="one of"):
        structure(DartsConfig, {"ops": "binaryy"}, "search_space")


def test_odd_resolution_factorized_reduce():
    """Fashion-MNIST sizes (28 -> 14 -> 7 -> 4) work through reductions and skip_connect."""
    space = DartsSpace(DartsConfig(layers=3, init_channels=4, nodes=2, stem_multiplier=1))
    net = space.build_supernet((1, 28, 28), 10, NoBinarizer())
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_binary_op_set_builds_1bit_convs():
    """ops = "binary" builds BN-1bit conv-BN-PReLU ops; pointwise inputs are binarized."""
    from automl_bin.nn.qconv import QConv2d
    from automl_bin_plugins.binarizers.xnor import XnorBinarizer

    space = DartsSpace(DartsConfig(layers=3, init_channels=4, nodes=2, stem_multiplier=1,
                                   ops="binary"))
    assert space.op_names[-1] == "none"  # CP-NAS order
    net = space.build_supernet(SHAPE, 3, XnorBinarizer())
    convs = [m for m in net.modules() if isinstance(m, QConv2d)]
    assert convs and all(c.weight_bits == 1 for c in convs)
    pointwise = [c for c in convs if c.kernel_size == (1, 1) and c.groups == 1
                 and c.input_bits == 1]
    depthwise = [c for c in convs if c.groups > 1]
    assert pointwise and depthwise and all(c.input_bits == 32 for c in depthwise)
    assert any(isinstance(m, torch.nn.PReLU) for m in net.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.cells.modules())
    net(torch.randn(2, *SHAPE)).sum().backward()
    g = space.sample_genotype(random.Random(0))
    discrete = space.build_network(g, SHAPE, 3, XnorBinarizer(),
                                   {"layers": 3, "init_channels": 4})
    assert discrete(torch.randn(2, *SHAPE)).shape == (2, 3)


def test_real_op_set_with_binary_weights_keeps_real_inputs():
    """In the real style a 1-bit binarizer binarizes weights only (sign after ReLU is all +1)."""
    from automl_bin.nn.qconv import QConv2d
    from automl_bin_plugins.binarizers.xnor import XnorBinarizer

    space = DartsSpace(DartsConfig(layers=2, init_channels=4, nodes=2, stem_multiplier=1))
    net = space.build_supernet(SHAPE, 3, XnorBinarizer())
    convs = [m for m in net.modules() if isinstance(m, QConv2d)]
    assert all(c.weight_bits == 1 and c.input_bits == 32 for c in convs)


def test_partial_channel_op_k1_equals_full_mixed_op():
    """PC-DARTS with partial_k = 1 reproduces the full mixed op exactly."""
    from automl_bin.nn.mixed_op import MixedOp
    from automl_bin.nn.partial import PartialChannelOp

    torch.manual_seed(0)
    ops = [torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.Identity(), torch.nn.AvgPool2d(3, 1, 1)]
    mixed = MixedOp(ops)
    x, w = torch.randn(2, 4, 6, 6), torch.softmax(torch.randn(3), 0)
    assert torch.equal(PartialChannelOp(mixed, 1, 1)(x, w), mixed(x, w))


def test_partial_channels_process_a_slice_and_shuffle():
    """With k = 2 the first C/2 channels go through the op, the rest bypass, then a shuffle."""
    from automl_bin.nn.mixed_op import MixedOp
    from automl_bin.nn.partial import PartialChannelOp, channel_shuffle

    x = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 2, 2).contiguous()
    op = PartialChannelOp(MixedOp([torch.nn.Identity()]), 2, 1)
    y = op(x, torch.tensor([2.0]))  # the op doubles its slice
    # processed [0, 2] and bypassed [2, 3] interleave: 0, 2, 2, 3
    assert y[0, :, 0, 0].tolist() == [0.0, 2.0, 2.0, 3.0]
    assert channel_shuffle(torch.arange(6.0).view(1, 6, 1, 1), 3).flatten().tolist() == \
        [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    reduce = PartialChannelOp(MixedOp([torch.nn.AvgPool2d(3, 2, 1)]), 2, 2)
    assert reduce(torch.randn(1, 4, 7, 7), torch.ones(1)).shape == (1, 4, 4, 4)


def test_edge_normalisation_enters_the_genotype():
    """Edge weights multiply op weights in the DARTS rule; unknown supernet options raise."""
    space = DartsSpace(DartsConfig(layers=3, init_channels=4, nodes=2, stem_multiplier=1))
    net = space.build_supernet(SHAPE, 3, NoBinarizer(), {"partial_k": 2, "edge_norm": True})
    assert len(net.arch_parameters()) == 4
    assert net(torch.randn(2, *SHAPE)).shape == (2, 3)
    ew = net.edge_weights()["normal"]
    assert torch.allclose(ew[:2].sum(), torch.tensor(1.0))  # node 2's two inputs
    with torch.no_grad():
        net.alphas_normal.zero_()
        net.alphas_normal[:, space.op_names.index("sep_conv_3x3")] = 1.0
        net.betas_normal.zero_()
        net.betas_normal[4] = 5.0  # edge 2->3 dominates node 3's inputs
    kept = [(e.source, e.target) for e in net.genotype().cell("normal").edges]
    assert (2, 3) in kept
    with pytest.raises(ValueError, match="partial_k"):
        space.build_supernet(SHAPE, 3, NoBinarizer(), {"partial_k": 3})
    with pytest.raises(ValueError, match="supports"):
        space.build_supernet(SHAPE, 3, NoBinarizer(), {"bogus": 1})
