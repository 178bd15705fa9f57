"""The ``random`` baseline: sample architectures, score them with an estimator, keep the best.

With the ``supernet`` estimator (default) it is random search with weight sharing (Li &
Talwalkar 2019): each epoch trains the supernet along a uniformly sampled single path per batch,
then scores ``samples_per_epoch`` fresh random genotypes on the validation split with the shared
weights. With ``retrain`` every sample is trained from scratch (costly, honest). The best
genotype by validation score over the whole search is returned.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from typing import Any

import attrs

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin.interfaces import Genotype, SearchEnv, Strategy

__all__ = ["RandomSearch"]

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)


@attrs.frozen(kw_only=True)
class RandomConfig:
    epochs: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    #: random genotypes scored at the end of each epoch
    samples_per_epoch: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: the estimator scoring samples: "supernet" (weight sharing) or "retrain"
    estimator: str = "supernet"
    #: that estimator's own keys
    estimator_params: dict[str, Any] = attrs.field(factory=dict)
    #: weight SGD of the shared supernet (cosine-annealed lr → lr_min)
    lr: float = attrs.field(default=0.025, validator=_gt0)
    lr_min: float = attrs.field(default=0.001, validator=_ge0)
    momentum: float = attrs.field(default=0.9, validator=_ge0)
    weight_decay: float = attrs.field(default=3e-4, validator=_ge0)
    grad_clip: float = attrs.field(default=5.0, validator=_ge0)
    #: stop each supernet epoch after this many steps (0 = whole training split)
    max_steps: int = attrs.field(default=0, validator=_ge0)


class RandomSearch(Strategy):
    """Uniform random sampling of genotypes, scored by the configured estimator."""

    Config = RandomConfig
    requires_estimator = True

    def setup(self, env: SearchEnv) -> None:
        super().setup(env)
        if env.estimator is None:
            raise ValueError("the random strategy needs an estimator ([strategy] estimator)")
        self.rng = random.Random(env.seed)
        self.best: tuple[float, Genotype] | None = None
        self.history: list[dict[str, Any]] = []
        self.weight_sharing = self.config.estimator == "supernet"
        self.supernet = None
        if self.weight_sharing:
            from automl_bin.training import SgdConfig, make_sgd

            cfg = self.config
            self.supernet = env.space.build_supernet(env.input_shape, env.num_classes,
                                                     env.binarizer).to(env.device)
            self.sgd = SgdConfig(lr=cfg.lr, lr_min=cfg.lr_min, momentum=cfg.momentum,
                                 weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip)
            self.w_opt = make_sgd(self.supernet.weight_parameters(), self.sgd)

    def num_epochs(self) -> int:
        return self.config.epochs

    def _train_supernet(self, epoch: int) -> dict[str, float]:
        import torch.nn.functional as F

        from automl_bin.training import RunningMeter, clip_and_step, cosine_lr, set_lr

        env, net = self.env, self.supernet
        assert env is not None and net is not None
        set_lr(self.w_opt, cosine_lr(self.sgd, epoch, self.config.epochs))
        train = env.splits["train"]
        steps = len(train) if not self.config.max_steps else min(len(train), self.config.max_steps)
        weights = net.weight_parameters()
        meter = RunningMeter()
        net.train()
        for x, y in env.reporter.track(itertools.islice(train.batches(epoch), steps), steps,
                                       f"search epoch {epoch + 1}"):
            net.set_fixed_architecture(env.space.sample_genotype(self.rng))
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            self.w_opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_and_step(weights, self.w_opt, self.config.grad_clip)
            meter.update(loss.detach(), logits.detach(), y)
        net.set_fixed_architecture(None)
        return meter.result("train")

    def run_epoch(self, epoch: int) -> Mapping[str, float]:
        from automl_bin.interfaces import EstimationEnv

        env = self.env
        assert env is not None and env.estimator is not None
        metrics: dict[str, float] = {}
        if self.weight_sharing:
            metrics.update(self._train_supernet(epoch))
        est_env = EstimationEnv(space=env.space, binarizer=env.binarizer,
                                input_shape=env.input_shape, num_classes=env.num_classes,
                                device=env.device, seed=env.seed + epoch, splits=env.splits,
                                fit="train", score="val", reporter=env.reporter,
                                supernet=self.supernet, network=env.network)
        scores = []
        for _ in range(self.config.samples_per_epoch):
            genotype = env.space.sample_genotype(self.rng)
            estimate = env.estimator.estimate(genotype, est_env)
            scores.append(estimate.score)
            self.history.append({"epoch": epoch, "score": estimate.score,
                                 "genotype": genotype.to_dict()})
            if self.best is None or estimate.score > self.best[0]:
                self.best = (estimate.score, genotype)
        assert self.best is not None
        metrics.update({"val_acc": max(scores), "mean_sample_val_acc": sum(scores) / len(scores),
                        "best_val_acc": self.best[0]})
        return metrics

    def derive(self) -> Genotype:
        if self.best is None:
            raise RuntimeError("random search derived before any epoch ran")
        return self.best[1]

    def final_metrics(self) -> Mapping[str, float]:
        return {"best_val_acc": self.best[0]} if self.best else {}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "rng": self.rng.getstate(),
            "best": None if self.best is None else (self.best[0], self.best[1].to_json()),
            "history": self.history,
        }
        if self.supernet is not None:
            state["supernet"] = self.supernet.state_dict()
            state["w_opt"] = self.w_opt.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        best = state["best"]
        self.best = None if best is None else (best[0], Genotype.from_json(best[1]))
        self.history = list(state["history"])
        if self.supernet is not None:
            self.supernet.load_state_dict(state["supernet"])
            self.w_opt.load_state_dict(state["w_opt"])


@hookimpl
def register_strategies(register: Register) -> None:
    register("random", RandomSearch)
