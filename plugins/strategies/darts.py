"""The ``darts`` strategy: differentiable architecture search, first or second order.

See docs/algorithms.md §DARTS bilevel step.

Each step alternates an α update on a validation batch (`BilevelOptimizer.arch_step`) and an
SGD weight update on a training batch; the batch loop, warm-up, cosine learning rate, meters and
checkpoint state are the one-shot base's (`automl_bin.search.one_shot`). Torch is imported in
`build`, keeping ``automl-bin check`` fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin.interfaces import SearchEnv
from automl_bin.search.one_shot import EpochPlan, OneShotStrategy
from automl_bin.search.optimizer_keys import BilevelKeys

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


class DartsStrategy(OneShotStrategy):
    """DARTS: bilevel optimisation of α (Adam) and weights (SGD) on a mixed-op supernet."""

    Config = DartsConfig

    def build(self, env: SearchEnv) -> None:
        from automl_bin.search.bilevel import BilevelOptimizer
        from automl_bin.training import make_sgd

        cfg = self.config
        self.supernet = env.space.build_supernet(env.input_shape, env.num_classes,
                                                 env.binarizer, self.supernet_options()
                                                 ).to(env.device)
        w_opt = make_sgd(self.supernet.weight_parameters(), self.sgd)
        self.bilevel = BilevelOptimizer(self.supernet, w_opt, cfg.arch_config(), order=cfg.order,
                                        grad_clip=cfg.grad_clip, fd_eps=cfg.fd_eps,
                                        dist=env.dist, **self.loss_functions())

    def supernet_options(self) -> dict[str, Any]:
        """Options passed to `SearchSpace.build_supernet` (PC-DARTS asks for partial channels)."""
        return {}

    def loss_functions(self) -> dict[str, Any]:
        """Train/val losses of the bilevel step; subclasses add binarizer terms or KD."""
        return {}

    def supernets(self) -> Mapping[str, Any]:
        return {"supernet": self.supernet}

    def weight_optimizers(self) -> Mapping[str, Any]:
        return {"w_opt": self.bilevel.w_opt}

    def arch_optimizers(self) -> Mapping[str, Any]:
        return {"a_opt": self.bilevel.a_opt}

    def num_epochs(self) -> int:
        return self.config.epochs

    def search_step(self, plan: EpochPlan, xt: Any, yt: Any, xv: Any, yv: Any) -> int:
        if plan.update_arch:
            self.stats.mean("arch_loss", self.bilevel.arch_step(xt, yt, xv, yv))
        loss, logits = self.bilevel.weight_step(xt, yt)
        self.stats.observe("train", loss, logits, yt)
        return len(xt)


@hookimpl
def register_strategies(register: Register) -> None:
    # gdas is DARTS with sampled losses; registering it here needs no new entry point
    from automl_bin_plugins.strategies.gdas import GdasStrategy

    register("darts", DartsStrategy)
    register("gdas", GdasStrategy)
