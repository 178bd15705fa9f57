"""`Strategy`: the search algorithm.

Lifecycle (the runner owns the loop; a strategy owns only search decisions)::

    strategy = StrategyClass(config)
    strategy.setup(env)                      # build supernets, optimizers, state
    [strategy.load_state_dict(state)]        # when resuming from a checkpoint
    for epoch in range(start, strategy.num_epochs()):
        metrics = strategy.run_epoch(epoch)  # train/search one epoch, return its metrics
        # the runner fires on_epoch_end and writes a checkpoint of strategy.state_dict()
    genotype = strategy.derive()             # the best architecture found
    strategy.teardown()

A strategy never builds data loaders, opens tracking runs or writes checkpoints itself: it gets
batches from ``env.splits``, reports through ``env.reporter`` and returns state from
`state_dict`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from automl_bin.interfaces.binarizer import Binarizer, EmptyConfig
from automl_bin.interfaces.estimator import Estimator
from automl_bin.interfaces.genotype import Genotype
from automl_bin.interfaces.reporter import BatchSource, Reporter
from automl_bin.interfaces.search_space import SearchSpace

if TYPE_CHECKING:
    import torch

    from automl_bin.interfaces.dist_context import DistContext

__all__ = ["Strategy", "SearchEnv"]


@attrs.define(kw_only=True)
class SearchEnv:
    """Everything a strategy may use during a search."""

    space: SearchSpace
    binarizer: Binarizer
    input_shape: tuple[int, int, int]
    num_classes: int
    device: torch.device
    seed: int
    #: ``train`` and ``val`` (the two halves of the training set) and ``test``; select on ``val``
    splits: Mapping[str, BatchSource]
    reporter: Reporter
    #: the estimator configured for the search (recipe ``[strategy] estimator``), if any
    estimator: Estimator | None = None
    #: build another registered component: ``create("binarizer", "none")``
    create: Callable[..., Any] = attrs.field(default=None)
    #: network size options for discrete networks (the recipe's ``[retrain] network``)
    network: Mapping[str, Any] = attrs.field(factory=dict)
    #: this process's rank in a data-parallel run (None: one process); gradient-based code
    #: averages its gradients over ranks with `automl_bin.distributed`, and the training
    #: splits already yield only this rank's slice of each batch
    dist: DistContext | None = None


class Strategy(ABC):
    """Base class of search strategies; ``Config`` validates the recipe's ``[strategy]`` keys."""

    Config: ClassVar[type] = EmptyConfig
    #: whether `run_epoch` needs ``env.estimator``
    requires_estimator: ClassVar[bool] = False
    #: False for strategies whose epoch may leave the architecture state unchanged (e.g. a
    #: baseline that evaluates one fixed architecture); say why in the next attribute. The
    #: conformance suite (`automl_bin.testing.check_strategy`) reads both.
    #: True when every gradient step averages its gradients over ``env.dist`` (see
    #: `automl_bin.distributed`); the runner refuses data-parallel runs of the others, which
    #: would silently diverge across ranks
    supports_data_parallel: ClassVar[bool] = False
    changes_architecture_each_epoch: ClassVar[bool] = True
    #: True when `op_weights` are the mixing weights the search optimises by gradient (softmax
    #: of α, rows summing to 1): the runner then logs ``alpha_margin`` and ``argmax_changes``
    #: every epoch and warns when the search ends with α barely moved
    differentiable: ClassVar[bool] = False
    why_architecture_may_not_change: ClassVar[str | None] = None

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        self.env: SearchEnv | None = None

    def check_compatible(self, space: SearchSpace, binarizer: Binarizer) -> str | None:
        """Why this configured strategy cannot search ``space`` with ``binarizer``, or None.

        Called when a recipe is resolved (``automl-bin check`` and ``run``), before any data is
        loaded, so an unsupported combination is reported as one sentence with its fix (e.g.
        "its Child is a 1-bit network ...; use a 1-bit binarizer such as 'recon'"). `setup`
        should refuse the same combinations with ValueError.
        """
        return None

    def setup(self, env: SearchEnv) -> None:
        """Prepare the search (build supernets and optimizers). Subclasses call super()."""
        self.env = env

    @abstractmethod
    def num_epochs(self) -> int:
        """How many times the runner calls `run_epoch`."""

    @abstractmethod
    def run_epoch(self, epoch: int) -> Mapping[str, float]:
        """Search for one epoch and return its metrics (``train_loss``, ``val_acc``, ...)."""

    @abstractmethod
    def derive(self) -> Genotype:
        """The architecture the search currently selects (called after the last epoch)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume after the last completed epoch (tensors and plain data)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state returned by `state_dict` (called after `setup`)."""

    def supernets(self) -> Mapping[str, Any]:
        """Every supernet the strategy trains, by name (declared, never guessed): the
        data-parallel runner compares their architecture parameters across ranks. Default:
        none (a strategy without a supernet)."""
        return {}

    def op_weights(self) -> Mapping[str, Any] | None:
        """Per cell type, the current ``edges × ops`` operation weights (for plots), or None."""
        return None

    def tags(self) -> Mapping[str, str]:
        """Tags for the tracked runs that describe this configuration (e.g. ablation switches).

        Called before `setup`, from the validated config only.
        """
        return {}

    def final_metrics(self) -> Mapping[str, float]:
        """Metrics of the finished search logged on the search run (default: none)."""
        return {}

    def teardown(self) -> None:
        """Release resources; called once, also after an error or an interrupt."""
