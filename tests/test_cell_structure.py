"""The documented cell calls of search spaces and supernets, and the mixing override."""

from __future__ import annotations

import pytest
import torch

from automl_bin.interfaces import CELLS, MIXING, CellStructure, CellType
from automl_bin.nn.mixed_op import MixedOp, hard_one_hot
from automl_bin.search.decoupled import EdgeWeightNorms, arch_parameter_kinds
from automl_bin.search.sampled_path import dag_problem
from automl_bin_plugins.binarizers.none import NoBinarizer
from automl_bin_plugins.darts_space.space import DartsConfig, DartsSpace

SHAPE = (1, 8, 8)


def _net(layers: int = 3, **options):
    torch.manual_seed(0)
    space = DartsSpace(DartsConfig(layers=layers, init_channels=4, nodes=2, stem_multiplier=1))
    return space, space.build_supernet(SHAPE, 3, NoBinarizer(), options)


def test_darts_space_declares_and_reports_its_cell_structure():
    space, net = _net(partial_k=2, edge_norm=True)
    assert {CELLS, MIXING} <= space.capabilities
    structure = space.cell_structure()
    assert structure == net.cell_structure()
    assert structure.names == ["normal", "reduce"]
    assert structure.cell("normal").edges == ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert structure.cell("normal").incoming(3) == [2, 3, 4]
    assert structure.op_names == space.op_names
    for kind, alpha in net.alphas().items():
        assert tuple(alpha.shape) == structure.shape(kind)
        params = net.cell_arch_parameters()[kind]
        assert params[0] is alpha and len(params) == 2  # α and the edge logits
        assert all(p.shape[0] == structure.cell(kind).num_edges for p in params)
    assert arch_parameter_kinds(net, net.arch_parameters()) == ["normal", "reduce"] * 2
    with pytest.raises(KeyError, match="cell types are"):
        structure.cell("stem")


def test_candidate_ops_are_the_ops_of_every_cell_of_a_type():
    _, net = _net(layers=3)  # cells: normal, reduce, reduce
    assert len(net.candidate_ops("normal", 0)) == 1
    assert len(net.candidate_ops("reduce", 4)) == 2
    ops = net.candidate_ops("normal", 1)[0]
    assert len(ops) == len(net.cell_structure().op_names)
    assert net.candidate_ops("reduce", 0)[0][0] is not net.candidate_ops("reduce", 0)[1][0]
    with pytest.raises(ValueError, match="out of range"):
        net.candidate_ops("normal", 5)
    _, single = _net(layers=1)  # no reduction cell is built
    assert single.candidate_ops("reduce", 0) == []
    assert EdgeWeightNorms(single).kinds == ["normal"]


def test_mixing_with_softmax_alpha_changes_nothing_and_nests():
    _, net = _net()
    x = torch.randn(4, *SHAPE)
    net.eval()
    plain = net(x)
    soft = {k: torch.softmax(a, dim=-1) for k, a in net.alphas().items()}
    with net.mixing(soft):
        assert torch.equal(net(x), plain)
        one_hot = {"reduce": torch.eye(8)[[4] * 5]}
        with net.mixing(one_hot):
            inner = net(x)
        assert torch.equal(net(x), plain)
    assert not torch.equal(inner, plain)
    assert torch.equal(net(x), plain)


def test_mixing_refuses_bad_weights_and_a_fixed_architecture():
    space, net = _net()
    with pytest.raises(ValueError, match="unknown cell type 'stem'"):
        with net.mixing({"stem": torch.ones(5, 8)}):
            pass
    with pytest.raises(ValueError, match=r"expected \(edges, ops\) = \(5, 8\)"):
        with net.mixing({"normal": torch.ones(4, 8)}):
            pass
    net.set_fixed_architecture(space.sample_genotype(__import__("random").Random(0)))
    with pytest.raises(RuntimeError, match="set_fixed_architecture"):
        with net.mixing({}):
            pass
    net.set_fixed_architecture(None)
    with net.mixing({}):
        with pytest.raises(RuntimeError, match="mixing"):
            net.set_fixed_architecture(space.sample_genotype(__import__("random").Random(0)))


def test_mixed_op_skips_zero_weights_yet_keeps_them_in_the_graph():
    calls = []
    ops = [torch.nn.Conv2d(2, 2, 1) for _ in range(3)]
    for i, op in enumerate(ops):
        op.register_forward_hook(lambda *_, i=i: calls.append(i))
    mixed = MixedOp(ops)
    logits = torch.tensor([0.1, 0.7, 0.2], requires_grad=True)
    w = hard_one_hot(torch.softmax(logits, dim=0))
    assert w.tolist()[0] == 0.0 and w.tolist()[2] == 0.0
    x = torch.randn(2, 2, 4, 4)
    out = mixed(x, w)
    assert calls == [1]
    assert torch.allclose(out, ops[1](x))
    out.sum().backward()
    assert logits.grad is not None and (logits.grad != 0).all()


def test_structure_errors_name_the_capability():
    class Opaque(DartsSpace):
        capabilities = frozenset()

        def cell_structure(self):  # the base class's: not implemented
            return super(DartsSpace, self).cell_structure()

    space = Opaque(DartsConfig(layers=1, init_channels=4, nodes=2))
    with pytest.raises(NotImplementedError, match="'cells'"):
        space.cell_structure()
    assert "'cells' capability" in dag_problem(space)
    assert dag_problem(DartsSpace()) is None
    structure = CellStructure(cell_types=[CellType("c", [[0, 2], [1, 2]])], op_names=["a"])
    assert structure.edges() == {"c": [(0, 2), (1, 2)]}


def test_a_supernet_without_cells_says_so():
    from automl_bin.interfaces.supernet import Supernet

    class Bare(Supernet):
        def __init__(self):
            super().__init__()
            self.alpha = torch.nn.Parameter(torch.zeros(3))

        def arch_parameters(self):
            return [self.alpha]

        def genotype(self):
            raise NotImplementedError

        def op_weights(self):
            return {}

        def set_fixed_architecture(self, genotype):
            pass

    net = Bare()
    with pytest.raises(NotImplementedError, match="'mixing' capability"):
        net.mixing({})
    with pytest.raises(ValueError, match="decoupled optimization ranks the edges"):
        EdgeWeightNorms(net)
