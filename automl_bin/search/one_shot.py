"""`OneShotStrategy`: the template of every weight-sharing, gradient-based search.

A one-shot strategy declares its supernets and optimizers and writes what one mini-batch does
(an architecture step and/or a weight step); the base owns the rest, once for all of them:

    setup(env)
      self.build(env)                        # supernets, optimizers, strategy state
    run_epoch(epoch)
      plan = self.plan_epoch(epoch)          # label, whether α steps run (warm-up), weight lrs
      learning rates <- plan.lrs             # cosine over the search by default
      self.begin_epoch(plan)                 # e.g. architecture inheritance between supernets
      for each train batch (max_steps), paired with a cycled val batch:
          images = self.search_step(plan, xt, yt, xv, yv)   # records losses in self.stats
          weight_images += images × data-parallel ranks
      metrics = train meters, step means, weight_images, self.evaluate(...), alpha_entropy,
                lr, self.extra_metrics(plan)
    state_dict() / load_state_dict()         # every declared supernet and optimizer,
                                             # weight_images, plus extra_state()
    derive() / op_weights()                  # of the searched supernet

Gradients are averaged over data-parallel ranks by the bilevel step
(`automl_bin.search.bilevel.BilevelOptimizer`), so a subclass whose steps go through it
supports ``--nproc``. DARTS, PC-DARTS, DCP-NAS and GDAS are written on this base; see
docs/plugins.md, "Writing a one-shot strategy".
"""

from __future__ import annotations

import itertools
from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from automl_bin.interfaces.genotype import Genotype
from automl_bin.interfaces.strategy import SearchEnv, Strategy

if TYPE_CHECKING:
    import torch

    from automl_bin.interfaces.supernet import Supernet

__all__ = ["OneShotStrategy", "EpochPlan", "EpochStats"]


@attrs.define(kw_only=True)
class EpochPlan:
    """What one search epoch does; `OneShotStrategy.plan_epoch` makes it."""

    epoch: int
    #: the progress label, e.g. "search epoch 3"
    label: str
    #: whether architecture steps run (False during the warm-up)
    update_arch: bool
    #: weight learning rate per weight optimizer name (`OneShotStrategy.weight_optimizers`)
    lrs: dict[str, float] = attrs.field(factory=dict)
    #: the learning rate logged as ``lr``
    lr: float = 0.0
    #: a strategy-defined phase (e.g. DCP-NAS: Parent or Child), free for subclasses
    phase: int = 0
    #: strategy-defined details of the epoch (e.g. the DCP-NAS round)
    info: dict[str, Any] = attrs.field(factory=dict)


class EpochStats:
    """What the steps of one epoch record: sample-weighted loss/accuracy meters by prefix and
    per-step means by key. The base turns them into the epoch's metrics."""

    def __init__(self) -> None:
        from automl_bin.training import RunningMeter

        self._meter_type = RunningMeter
        self.meters: dict[str, Any] = {}
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def observe(self, prefix: str, loss: torch.Tensor | float, logits: torch.Tensor,
                labels: torch.Tensor) -> None:
        """A weight step's loss and logits: ``<prefix>_loss`` and ``<prefix>_acc``."""
        self.meters.setdefault(prefix, self._meter_type()).update(loss, logits, labels)

    def mean(self, key: str, value: torch.Tensor | float) -> None:
        """One step's value of ``key``; the epoch logs the mean over the steps that gave one."""
        self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.counts[key] = self.counts.get(key, 0) + 1

    def meter_results(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for prefix, meter in self.meters.items():
            out.update(meter.result(prefix))
        return out

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}


class OneShotStrategy(Strategy):
    """Base of the weight-sharing, gradient-based strategies (lifecycle: module docstring).

    The config must provide ``max_steps`` (steps per epoch, 0 = the whole training split),
    ``warmup_epochs`` (weights-only epochs at the start) and ``sgd_config()`` (the weight SGD
    and its cosine schedule), as `automl_bin.search.optimizer_keys.BilevelKeys` does.
    """

    differentiable = True
    supports_data_parallel = True

    # -- what a subclass provides -----------------------------------------------------------
    @abstractmethod
    def build(self, env: SearchEnv) -> None:
        """Build the supernets, optimizers and state (``self.sgd`` is already set)."""

    @abstractmethod
    def supernets(self) -> Mapping[str, Supernet]:
        """Every supernet the strategy trains, by the name its state is saved under; the first
        is the searched one unless `searched` says otherwise."""

    @abstractmethod
    def weight_optimizers(self) -> Mapping[str, Any]:
        """The weight optimizers, by the name their state is saved under; the base sets their
        learning rates from `plan_epoch` (a cosine over the search by default)."""

    @abstractmethod
    def arch_optimizers(self) -> Mapping[str, Any]:
        """The architecture optimizers, by the name their state is saved under."""

    @abstractmethod
    def search_step(self, plan: EpochPlan, xt: torch.Tensor, yt: torch.Tensor,
                    xv: torch.Tensor, yv: torch.Tensor) -> int:
        """One mini-batch: architecture and/or weight steps; record losses in ``self.stats``.

        :return: the images the searched network's weights were trained on in this step (0
            when only another supernet trained); the base counts them as ``weight_images``.
        """

    def optimizers(self) -> dict[str, Any]:
        """Every optimizer whose state a resumed search needs."""
        return {**self.weight_optimizers(), **self.arch_optimizers()}

    def searched(self, plan: EpochPlan | None = None) -> Supernet:
        """The supernet whose architecture the search returns (and, given a plan, the one that
        epoch searches, for its ``alpha_entropy``)."""
        return next(iter(self.supernets().values()))

    def plan_epoch(self, epoch: int) -> EpochPlan:
        """Default: α steps after ``warmup_epochs``; every weight optimizer's lr on one cosine
        over `num_epochs`."""
        from automl_bin.training import cosine_lr

        lr = cosine_lr(self.sgd, epoch, self.num_epochs())
        return EpochPlan(epoch=epoch, label=f"search epoch {epoch + 1}",
                         update_arch=epoch >= self.config.warmup_epochs,
                         lrs={name: lr for name in self.weight_optimizers()}, lr=lr)

    def begin_epoch(self, plan: EpochPlan) -> None:
        """Called after the learning rates are set and before the first step (default: none)."""

    def evaluate(self, plan: EpochPlan) -> dict[str, float]:
        """Validation metrics of the epoch (default: ``val_loss``/``val_acc`` of `searched`)."""
        from automl_bin.training import evaluate

        assert self.env is not None
        return evaluate(self.searched(plan), self.env.splits["val"].batches(plan.epoch,
                                                                            shuffle=False), "val")

    def extra_metrics(self, plan: EpochPlan) -> dict[str, float]:
        """Metrics of the epoch beyond the base's (default: none)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """State beyond the declared supernets and optimizers (default: none)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore `extra_state` (``state`` is the whole checkpoint)."""

    # -- the template -------------------------------------------------------------------------
    def setup(self, env: SearchEnv) -> None:
        super().setup(env)
        self.sgd = self.config.sgd_config()
        #: images seen by the searched network's weight steps so far (the search's budget)
        self.weight_images = 0
        self.stats = EpochStats()
        self.build(env)

    def steps_per_epoch(self) -> int:
        assert self.env is not None, "setup() must run first"
        train = self.env.splits["train"]
        max_steps = self.config.max_steps
        return len(train) if not max_steps else min(len(train), max_steps)

    def run_epoch(self, epoch: int) -> Mapping[str, float]:
        from automl_bin.training import set_lr

        env = self.env
        assert env is not None, "setup() must run first"
        plan = self.plan_epoch(epoch)
        optimizers = self.weight_optimizers()
        for name, lr in plan.lrs.items():
            set_lr(optimizers[name], lr)
        self.begin_epoch(plan)
        self.stats = EpochStats()
        for net in self.supernets().values():
            net.train()
        ranks = 1 if env.dist is None else env.dist.world_size
        steps = self.steps_per_epoch()
        pairs = zip(env.splits["train"].batches(epoch),
                    itertools.cycle(env.splits["val"].batches(epoch)))
        for (xt, yt), (xv, yv) in env.reporter.track(itertools.islice(pairs, steps), steps,
                                                     plan.label):
            self.weight_images += self.search_step(plan, xt, yt, xv, yv) * ranks
        return self.epoch_metrics(plan)

    def epoch_metrics(self, plan: EpochPlan) -> dict[str, float]:
        metrics = self.stats.meter_results()
        metrics.update(self.stats.means())
        metrics["weight_images"] = float(self.weight_images)
        metrics.update(self.evaluate(plan))
        metrics["alpha_entropy"] = self.searched(plan).arch_entropy()
        metrics["lr"] = plan.lr
        metrics.update(self.extra_metrics(plan))
        return metrics

    def derive(self) -> Genotype:
        return self.searched().genotype()

    def op_weights(self) -> Mapping[str, Any] | None:
        return {k: v.cpu() for k, v in self.searched().op_weights().items()}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: net.state_dict() for name, net in self.supernets().items()}
        state.update({name: opt.state_dict() for name, opt in self.optimizers().items()})
        state["weight_images"] = self.weight_images
        state.update(self.extra_state())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, net in self.supernets().items():
            net.load_state_dict(state[name])
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state[name])
        # checkpoints written before the count existed resume from 0
        self.weight_images = int(state.get("weight_images", 0))
        self.load_extra_state(state)
