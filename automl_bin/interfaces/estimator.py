"""`Estimator`: scores an architecture.

Two built-ins show the range: ``supernet`` scores a genotype with the shared weights of a
trained supernet (cheap, used inside a search), ``retrain`` trains the genotype's discrete
network from scratch and reports its accuracy, parameter count and FLOPs (used for the final
result and by budget-rich searches).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from automl_bin.interfaces.binarizer import Binarizer, EmptyConfig
from automl_bin.interfaces.genotype import Genotype
from automl_bin.interfaces.reporter import BatchSource, Reporter
from automl_bin.interfaces.search_space import SearchSpace

if TYPE_CHECKING:
    import torch

    from automl_bin.interfaces.dist_context import DistContext
    from automl_bin.interfaces.supernet import Supernet

__all__ = ["Estimator", "Estimate", "EstimationEnv"]


@attrs.define(kw_only=True)
class EstimationEnv:
    """Everything an estimator may use.

    ``fit`` is the split to train on and ``score`` the split to score on: inside a search they are
    ``train``/``val`` (the test set is never used to select), for the final result
    ``train_full``/``test``.
    """

    space: SearchSpace
    binarizer: Binarizer
    input_shape: tuple[int, int, int]
    num_classes: int
    device: torch.device
    seed: int
    splits: Mapping[str, BatchSource]
    fit: Literal["train", "train_full"] = "train"
    score: Literal["val", "test"] = "val"
    reporter: Reporter
    #: the trained supernet, when the caller has one (required by the ``supernet`` estimator)
    supernet: Supernet | None = None
    #: network size options for `SearchSpace.build_network` (the recipe's ``[retrain] network``)
    network: Mapping[str, Any] = attrs.field(factory=dict)
    #: build another registered component: ``create("binarizer", "none")``
    create: Callable[..., Any] | None = None
    #: this process's rank in a data-parallel run (None: one process); gradient-based code
    #: averages its gradients over ranks with `automl_bin.distributed`, and the training
    #: splits already yield only this rank's slice of each batch
    dist: DistContext | None = None
    #: when an interrupted run is resumed (``automl-bin run --resume``): the last state this
    #: estimator passed to ``reporter.save_checkpoint`` (read with weights_only); continue after
    #: it instead of starting over. Put ``reported_epochs = [[epoch, metrics], ...]`` (every
    #: epoch reported so far, the one about to be reported included) in that state, and the
    #: runner restores the phase's curves and re-reports an epoch whose logging was cut off.
    resume: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class Estimate:
    """The result of scoring one genotype: ``score`` (higher is better) and named metrics."""

    genotype: Genotype
    score: float
    metrics: Mapping[str, float] = attrs.field(factory=dict)
    #: the trained model, when the estimator trained one (not serialised with the estimate)
    model: Any = attrs.field(default=None, eq=False, repr=False)


class Estimator(ABC):
    """Scores genotypes. ``Config`` validates the estimator's recipe keys."""

    Config: ClassVar[type] = EmptyConfig
    #: True when its training averages gradients over ``env.dist`` (`automl_bin.distributed`);
    #: only such estimators retrain in a data-parallel run
    supports_data_parallel: ClassVar[bool] = False

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def estimate(self, genotype: Genotype, env: EstimationEnv) -> Estimate:
        """Score ``genotype``. Raise ValueError when ``env`` lacks what this estimator needs."""
