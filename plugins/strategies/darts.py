"""The ``darts`` strategy: differentiable architecture search, first or second order.

See docs/algorithms.md §DARTS bilevel step.

Each step alternates an α update on a validation batch (`BilevelOptimizer.arch_step`) and an
SGD weight update on a training batch, over the whole epoch; the weight learning rate follows a
cosine schedule over the search. Torch is imported in `setup`, keeping ``automl-bin check``
fast.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin.interfaces import Genotype, SearchEnv, Strategy
from automl_bin_plugins.strategies.optimizer_keys import BilevelKeys

__all__ = ["DartsStrategy", "DartsConfig"]

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)


@attrs.frozen(kw_only=True)
class DartsConfig(BilevelKeys):
    # lr, lr_min, momentum, weight_decay, grad_clip, arch_*: see optimizer_keys
    #: search epochs (DARTS CIFAR: 50)
    epochs: int = attrs.field(default=50, validator=attrs.validators.ge(1))
    #: 1 = first-order (∇_α L_val at the current w), 2 = unrolled second order
    order: Literal[1, 2] = 1
    #: epochs at the start during which only the weights train (PC-DARTS: 15, DARTS: 0)
    warmup_epochs: int = attrs.field(default=0, validator=_ge0)
    #: finite-difference step of the second-order HVP, scaled by 1/‖v‖
    fd_eps: float = attrs.field(default=0.01, validator=_gt0)
    #: stop each epoch after this many steps (0 = the whole training split); for quick tries
    max_steps: int = attrs.field(default=0, validator=_ge0)


class DartsStrategy(Strategy):
    """DARTS: bilevel optimisation of α (Adam) and weights (SGD) on a mixed-op supernet."""

    Config = DartsConfig
    supports_data_parallel = True
    differentiable = True

    def setup(self, env: SearchEnv) -> None:
        super().setup(env)
        from automl_bin.search.bilevel import BilevelOptimizer
        from automl_bin.training import make_sgd

        cfg = self.config
        self.supernet = env.space.build_supernet(env.input_shape, env.num_classes,
                                                 env.binarizer, self.supernet_options()
                                                 ).to(env.device)
        self.sgd = cfg.sgd_config()
        w_opt = make_sgd(self.supernet.weight_parameters(), self.sgd)
        self.bilevel = BilevelOptimizer(self.supernet, w_opt, cfg.arch_config(), order=cfg.order,
                                        grad_clip=cfg.grad_clip, fd_eps=cfg.fd_eps,
                                        dist=env.dist, **self.loss_functions())
        #: images seen by weight steps so far (the search's weight-training budget)
        self.weight_images = 0

    def supernet_options(self) -> dict[str, Any]:
        """Options passed to `SearchSpace.build_supernet` (PC-DARTS asks for partial channels)."""
        return {}

    def loss_functions(self) -> dict[str, Any]:
        """Train/val losses of the bilevel step; subclasses add binarizer terms or KD."""
        return {}

    def num_epochs(self) -> int:
        return self.config.epochs

    def run_epoch(self, epoch: int) -> Mapping[str, float]:
        from automl_bin.training import RunningMeter, cosine_lr, set_lr

        env = self.env
        assert env is not None, "setup() must run first"
        lr = cosine_lr(self.sgd, epoch, self.config.epochs)
        set_lr(self.bilevel.w_opt, lr)
        train, val = env.splits["train"], env.splits["val"]
        steps = len(train) if not self.config.max_steps else min(len(train), self.config.max_steps)
        update_arch = epoch >= self.config.warmup_epochs
        meter = RunningMeter()
        arch_loss, arch_steps = 0.0, 0
        self.supernet.train()
        pairs = zip(train.batches(epoch), itertools.cycle(val.batches(epoch)))
        for (xt, yt), (xv, yv) in env.reporter.track(itertools.islice(pairs, steps), steps,
                                                     f"search epoch {epoch + 1}"):
            if update_arch:
                arch_loss += float(self.bilevel.arch_step(xt, yt, xv, yv))
                arch_steps += 1
            loss, logits = self.bilevel.weight_step(xt, yt)
            meter.update(loss, logits, yt)
            self.weight_images += len(xt) * (1 if env.dist is None else env.dist.world_size)
        metrics = dict(meter.result("train"))
        metrics["weight_images"] = float(self.weight_images)
        metrics.update(self.evaluate_supernet(val.batches(epoch, shuffle=False)))
        metrics["alpha_entropy"] = self.supernet.arch_entropy()
        metrics["lr"] = lr
        if arch_steps:
            metrics["arch_loss"] = arch_loss / arch_steps
        return metrics

    def evaluate_supernet(self, batches: Any) -> dict[str, float]:
        """``val_loss``/``val_acc`` of the supernet at the end of an epoch (GDAS: one path)."""
        from automl_bin.training import evaluate

        return evaluate(self.supernet, batches, "val")

    def derive(self) -> Genotype:
        return self.supernet.genotype()

    def op_weights(self) -> Mapping[str, Any] | None:
        return {k: v.cpu() for k, v in self.supernet.op_weights().items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "supernet": self.supernet.state_dict(),
            "w_opt": self.bilevel.w_opt.state_dict(),
            "a_opt": self.bilevel.a_opt.state_dict(),
            "weight_images": self.weight_images,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.bilevel.w_opt.load_state_dict(state["w_opt"])
        self.bilevel.a_opt.load_state_dict(state["a_opt"])
        self.weight_images = int(state.get("weight_images", 0))


@hookimpl
def register_strategies(register: Register) -> None:
    # gdas is DARTS with sampled losses; registering it here needs no new entry point
    from automl_bin_plugins.strategies.gdas import GdasStrategy

    register("darts", DartsStrategy)
    register("gdas", GdasStrategy)
