"""The ``darts`` search space: configuration and builders (torch imported lazily)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from automl_bin.config import structure
from automl_bin.interfaces import Binarizer, Cell, Edge, Genotype, SearchSpace
from automl_bin.interfaces.cell_structure import CELLS, MIXING, CellStructure, CellType
from automl_bin_plugins.darts_space.derive import edge_index

if TYPE_CHECKING:
    from torch import nn

    from automl_bin.interfaces.supernet import Supernet

__all__ = ["DartsSpace", "DartsConfig", "DartsNetworkConfig", "OP_SETS"]

#: named op sets; "real" is the DARTS/PC-DARTS set in its original order (none first)
OP_SETS: dict[str, tuple[str, ...]] = {
    "real": ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
             "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"),
    # the CP-NAS/DCP-NAS order puts none last [CODE: DCP-NAS utils/genotypes_m.py]
    "binary": ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
               "dil_conv_3x3", "dil_conv_5x5", "none"),
}


def _at_least(n: int) -> Any:
    return attrs.validators.ge(n)


def _check_ops(_inst: Any, _attr: attrs.Attribute, value: str | list[str]) -> None:
    if isinstance(value, str):
        if value not in OP_SETS:
            raise ValueError(f"'ops' must be one of {sorted(OP_SETS)} or a list of op names, "
                             f"got {value!r}")
        return
    known = OP_SETS["real"]
    unknown = [v for v in value if v not in known]
    if unknown:
        raise ValueError(f"'ops' has unknown op(s) {unknown}; known ops: {', '.join(known)}")
    if len(set(value)) != len(value):
        raise ValueError(f"'ops' lists an op twice: {value}")
    if not [v for v in value if v != "none"]:
        raise ValueError("'ops' needs at least one op other than 'none'")


@attrs.frozen(kw_only=True)
class DartsConfig:
    #: cells in the search supernet (DARTS CIFAR search: 8)
    layers: int = attrs.field(default=8, validator=_at_least(1))
    #: channels of the first cell (DARTS: 16)
    init_channels: int = attrs.field(default=16, validator=_at_least(2))
    #: intermediate nodes per cell (DARTS: 4 → 14 edges)
    nodes: int = attrs.field(default=4, validator=_at_least(1))
    #: stem width = stem_multiplier × init_channels
    stem_multiplier: int = attrs.field(default=3, validator=_at_least(1))
    #: stride of the stem conv: 1 as in DARTS CIFAR; 2 quarters the cost on CPU-sized runs
    stem_stride: int = attrs.field(default=1, validator=attrs.validators.in_((1, 2)))
    #: an op set name ("real", "binary") or an explicit list of op names
    ops: str | list[str] = attrs.field(default="real", validator=_check_ops)
    #: how ops are built: "real" (DARTS ReLU-conv-BN), "binary" (BN-1bit conv-BN-PReLU with
    #: real shortcuts, docs/algorithms.md §Operation sets), or "auto" = binary when ops =
    #: "binary", else real
    op_style: Literal["auto", "real", "binary"] = "auto"
    #: also binarize the inputs of depthwise convs in the binary style (the eval code does not)
    bin_act_on_depthwise: bool = False

    @property
    def style(self) -> str:
        if self.op_style != "auto":
            return self.op_style
        return "binary" if self.ops == "binary" else "real"


@attrs.frozen(kw_only=True)
class DartsNetworkConfig:
    #: cells of the retrained network (DARTS CIFAR eval: 20)
    layers: int = attrs.field(default=20, validator=_at_least(1))
    #: channels of its first cell (DARTS CIFAR eval: 36)
    init_channels: int = attrs.field(default=36, validator=_at_least(2))
    stem_multiplier: int = attrs.field(default=3, validator=_at_least(1))
    stem_stride: int = attrs.field(default=1, validator=attrs.validators.in_((1, 2)))
    #: DARTS auxiliary head at 2/3 depth (its loss weight is the trainer's auxiliary_weight)
    auxiliary: bool = False


class DartsSpace(SearchSpace):
    """DARTS cells (docs/algorithms.md §Cell DAG): 2 inputs, ``nodes`` intermediate nodes."""

    Config = DartsConfig
    NetworkConfig = DartsNetworkConfig
    genotype_space = "darts"
    #: the same names in both op sets. A binary-style pool adds only a BatchNorm and a stride-2
    #: skip_connect is a factorized reduce (1x1 convs), yet these are the cheap ops a collapsing
    #: DARTS search drifts to, so they count; ``none`` never survives the genotype rule but is
    #: counted should a strategy keep it
    parameter_free_ops = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect")
    capabilities = frozenset({CELLS, MIXING})

    def cell_structure(self) -> CellStructure:
        return CellStructure(cell_types=[CellType(k, edge_index(self.config.nodes))
                                         for k in ("normal", "reduce")],
                             op_names=self.op_names)

    @property
    def op_names(self) -> tuple[str, ...]:
        ops = self.config.ops
        return OP_SETS[ops] if isinstance(ops, str) else tuple(ops)

    #: supernet options strategies may request (PC-DARTS partial channels, edge normalisation)
    supernet_options = ("partial_k", "edge_norm")

    def build_supernet(self, input_shape: tuple[int, int, int], num_classes: int,
                       binarizer: Binarizer, options: Mapping[str, Any] | None = None) -> Supernet:
        from automl_bin_plugins.darts_space.supernet import DartsSupernet

        cfg = self.config
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.supernet_options))
        if unknown:
            raise ValueError(f"the darts space has no supernet option(s) {unknown}; it supports "
                             f"{list(self.supernet_options)}")
        return DartsSupernet(input_shape=input_shape, num_classes=num_classes, layers=cfg.layers,
                             init_channels=cfg.init_channels, nodes=cfg.nodes,
                             stem_multiplier=cfg.stem_multiplier, stem_stride=cfg.stem_stride,
                             op_names=self.op_names, op_style=cfg.style,
                             bin_act_on_depthwise=cfg.bin_act_on_depthwise,
                             binarizer=binarizer, space_name=self.genotype_space,
                             partial_k=int(options.get("partial_k", 1)),
                             edge_norm=bool(options.get("edge_norm", False)))

    def build_network(self, genotype: Genotype, input_shape: tuple[int, int, int],
                      num_classes: int, binarizer: Binarizer,
                      network: Mapping[str, Any] | None = None) -> nn.Module:
        from automl_bin_plugins.darts_space.network import DartsNetwork

        self.validate_genotype(genotype)
        if network is None or isinstance(network, Mapping):
            net_cfg = structure(DartsNetworkConfig, dict(network or {}), "retrain.network")
        else:
            net_cfg = network
        return DartsNetwork(genotype, input_shape=input_shape, num_classes=num_classes,
                            layers=net_cfg.layers, init_channels=net_cfg.init_channels,
                            stem_multiplier=net_cfg.stem_multiplier, stem_stride=net_cfg.stem_stride,
                            auxiliary=net_cfg.auxiliary, op_style=self.config.style,
                            bin_act_on_depthwise=self.config.bin_act_on_depthwise,
                            binarizer=binarizer)

    def sample_genotype(self, rng: random.Random) -> Genotype:
        ops = [o for o in self.op_names if o != "none"]
        cells = {}
        for kind in ("normal", "reduce"):
            edges = []
            for j in range(self.config.nodes):
                sources = sorted(rng.sample(range(2 + j), k=min(2, 2 + j)))
                edges += [Edge(rng.choice(ops), s, 2 + j) for s in sources]
            cells[kind] = Cell(edges=edges, concat=list(range(2, 2 + self.config.nodes)))
        return Genotype(space=self.genotype_space, cells=cells)

    def validate_genotype(self, genotype: Genotype) -> None:
        super().validate_genotype(genotype)
        known = set(OP_SETS["real"])
        for kind in ("normal", "reduce"):
            try:
                cell = genotype.cell(kind)
            except KeyError as exc:
                raise ValueError(str(exc)) from exc
            fed = set()
            for e in cell.edges:
                if e.op not in known:
                    raise ValueError(f"{kind} cell uses unknown op {e.op!r}")
                if not 0 <= e.source < e.target:
                    raise ValueError(f"{kind} cell edge {e} must go from an earlier node")
                fed.add(e.target)
            missing = [n for n in cell.concat if n >= 2 and n not in fed]
            if missing:
                raise ValueError(f"{kind} cell concatenates node(s) {missing} that no edge feeds")
