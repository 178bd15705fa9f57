"""`SearchSpace`: the family of architectures a strategy searches over.

A search space builds a *supernet* (every candidate at once, architecture parameters kept apart
from weights, see `automl_bin.interfaces.supernet.Supernet`), derives a discrete `Genotype` from
it, samples random genotypes, and builds the discrete network of a genotype for retraining.
Binarization is injected: every builder takes the `Binarizer` to use for its convolutions.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from automl_bin.interfaces.binarizer import Binarizer, EmptyConfig
from automl_bin.interfaces.cell_structure import CELLS, CellStructure
from automl_bin.interfaces.genotype import Genotype

if TYPE_CHECKING:
    from torch import nn

    from automl_bin.interfaces.supernet import Supernet

__all__ = ["SearchSpace"]


class SearchSpace(ABC):
    """A cell-based (or other) architecture space.

    ``Config`` validates the recipe's ``[search_space]`` keys; ``NetworkConfig`` validates the
    recipe's ``[retrain] network = {...}`` table (the size of the discrete network).
    """

    Config: ClassVar[type] = EmptyConfig
    NetworkConfig: ClassVar[type] = EmptyConfig
    #: the name genotypes of this space carry in ``Genotype.space``
    genotype_space: ClassVar[str] = ""
    #: op names without learnable weights (skip connections, pooling, ``none``): a genotype
    #: dominated by them is the collapse of DARTS-family searches, which the runner reports per
    #: epoch as ``arch.<cell>.param_free`` (see `automl_bin.diagnostics`)
    parameter_free_ops: ClassVar[tuple[str, ...]] = ()
    #: what the space and its supernets implement beyond the abstract methods, as strings of
    #: `automl_bin.interfaces.cell_structure`: ``"cells"`` (`cell_structure` and the supernet's
    #: cell calls), ``"mixing"`` (``with supernet.mixing(weights):``). Strategies test these in
    #: ``check_compatible`` instead of matching a space by name
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @property
    @abstractmethod
    def op_names(self) -> tuple[str, ...]:
        """The candidate operations of each edge, in supernet column order."""

    #: names of the supernet options (`build_supernet`'s ``options``) this space understands
    supernet_options: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def build_supernet(
        self, input_shape: tuple[int, int, int], num_classes: int, binarizer: Binarizer,
        options: Mapping[str, Any] | None = None,
    ) -> Supernet:
        """Build the weight-sharing supernet for inputs ``(C, H, W)`` and ``num_classes``.

        ``options`` are requests of the strategy (e.g. ``{"partial_k": 4, "edge_norm": True}``
        for PC-DARTS); raise ValueError naming the supported ones for an option the space does
        not implement (listed in `supernet_options`).
        """

    @abstractmethod
    def build_network(
        self,
        genotype: Genotype,
        input_shape: tuple[int, int, int],
        num_classes: int,
        binarizer: Binarizer,
        network: Mapping[str, Any] | None = None,
    ) -> nn.Module:
        """Build the discrete network of ``genotype``; ``network`` holds `NetworkConfig` keys."""

    def cell_structure(self) -> CellStructure:
        """The cell types, the ``(source, target)`` of each α row and the op names of the
        columns, the same as every supernet of this space reports (capability ``"cells"``)."""
        raise NotImplementedError(
            f"the search space {type(self).__name__} does not expose a cell structure (its "
            f"capabilities {sorted(self.capabilities)} lack {CELLS!r}); use a cell-based space "
            "such as 'darts', or implement cell_structure() and declare the capability")

    @abstractmethod
    def sample_genotype(self, rng: random.Random) -> Genotype:
        """Draw a genotype uniformly from the discrete space using ``rng``."""

    def validate_genotype(self, genotype: Genotype) -> None:
        """Raise ValueError when ``genotype`` does not belong to this space."""
        if self.genotype_space and genotype.space != self.genotype_space:
            raise ValueError(
                f"genotype is from search space {genotype.space!r}, not {self.genotype_space!r}"
            )
