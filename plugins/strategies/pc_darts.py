"""The ``pc_darts`` strategy: PC-DARTS (Xu et al. ICLR 2020; docs/algorithms.md §PC-DARTS).

DARTS' first-order bilevel step on a supernet with partial channel connections (``partial_k``,
channel shuffle) and edge normalisation (edge logits optimised with α; their softmax weights
multiply the op weights in the genotype rule), with α frozen for ``warmup_epochs``. It is the
``darts`` strategy with other supernet options and defaults, not a copy.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin.interfaces import Binarizer, SearchSpace
from automl_bin_plugins.strategies.darts import DartsConfig, DartsStrategy

__all__ = ["PcDartsStrategy", "PcDartsConfig"]

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)


@attrs.frozen(kw_only=True)
class PcDartsConfig(DartsConfig):
    #: channels through each mixed op: 1/partial_k of them (PC-DARTS CIFAR: 4)
    partial_k: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: edge normalisation logits, optimised with α and used in the genotype rule
    edge_norm: bool = True
    #: PC-DARTS is first order only
    order: Literal[1] = 1
    #: α is not updated during the first epochs (PC-DARTS: 15)
    warmup_epochs: int = attrs.field(default=15, validator=_ge0)
    #: weight SGD (PC-DARTS CIFAR: lr 0.1 cosine to 0, batch 256)
    lr: float = attrs.field(default=0.1, validator=_gt0)
    lr_min: float = attrs.field(default=0.0, validator=_ge0)
    #: Adam on α and the edge logits (PC-DARTS: 6e-4)
    arch_lr: float = attrs.field(default=6e-4, validator=_gt0)


class PcDartsStrategy(DartsStrategy):
    """DARTS with partial channels, edge normalisation and an α warm-up."""

    Config = PcDartsConfig

    def check_compatible(self, space: SearchSpace, binarizer: Binarizer) -> str | None:
        missing = {"partial_k", "edge_norm"} - set(space.supernet_options)
        if missing:
            return (f"the search space does not support the supernet option(s) "
                    f"{sorted(missing)} PC-DARTS needs; it supports "
                    f"{list(space.supernet_options) or 'none'}")
        return None

    def supernet_options(self) -> dict[str, Any]:
        return {"partial_k": self.config.partial_k, "edge_norm": self.config.edge_norm}


@hookimpl
def register_strategies(register: Register) -> None:
    register("pc_darts", PcDartsStrategy)
