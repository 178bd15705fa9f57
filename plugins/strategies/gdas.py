"""The ``gdas`` strategy: one sampled operation per edge (Dong & Yang, CVPR 2019).

GDAS ("Searching for A Robust Neural Architecture in Four GPU Hours") samples, at every forward
pass of the search, one candidate op per edge by Gumbel-softmax,
``s = softmax((log softmax(α) + G) / τ)`` with ``G ~ Gumbel(0, 1)``, and mixes the edge with the
straight-through one-hot of ``s`` (`automl_bin.nn.mixed_op.hard_one_hot`): only the sampled op
runs, and α gets its gradient through ``s``. ``τ`` anneals linearly from ``tau_max`` to
``tau_min`` over the epochs. Weights and α alternate as in first-order DARTS: this is the
``darts`` strategy on the one-shot base (`automl_bin.search.one_shot`: loop, schedule,
checkpoint) with sampled losses, written against the
documented cell calls (`Supernet.alphas`, ``with supernet.mixing(weights):``). The epoch's
``val_*`` metrics run the argmax op of every edge; the genotype is the DARTS rule on softmax(α).

The Gumbel noise comes from a generator seeded with the run's seed (saved in checkpoints), so
a seed gives one search, and every data-parallel rank draws the same paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from automl_bin.interfaces import CELLS, MIXING, Binarizer, SearchEnv, SearchSpace
from automl_bin.search.one_shot import EpochPlan
from automl_bin_plugins.strategies.darts import DartsConfig, DartsStrategy

if TYPE_CHECKING:
    import torch

__all__ = ["GdasStrategy", "GdasConfig", "temperature"]

_gt0 = attrs.validators.gt(0)


def temperature(epoch: int, epochs: int, tau_max: float, tau_min: float) -> float:
    """``τ`` of ``epoch``: linear from ``tau_max`` (first epoch) to ``tau_min`` (last)."""
    if epochs <= 1:
        return tau_max
    frac = epoch / (epochs - 1)
    return tau_min * frac + tau_max * (1.0 - frac)  # exact at both ends


@attrs.frozen(kw_only=True)
class GdasConfig(DartsConfig):
    # lr, lr_min, momentum, weight_decay, grad_clip, arch_*: see optimizer_keys (GDAS uses
    # DARTS' optimisers); epochs, warmup_epochs, max_steps: see the darts strategy
    #: Gumbel-softmax temperature at the first epoch (GDAS: 10)
    tau_max: float = attrs.field(default=10.0, validator=_gt0)
    #: temperature at the last epoch (GDAS: 0.1)
    tau_min: float = attrs.field(default=0.1, validator=_gt0)
    #: GDAS is first order only
    order: Literal[1] = 1

    def __attrs_post_init__(self) -> None:
        if self.tau_min > self.tau_max:
            raise ValueError(f"tau_min = {self.tau_min} exceeds tau_max = {self.tau_max}; the "
                             "temperature anneals downwards, so set tau_min <= tau_max")


class GdasStrategy(DartsStrategy):
    """GDAS: Gumbel-softmax straight-through sampling of one op per edge, τ annealed."""

    Config = GdasConfig

    def check_compatible(self, space: SearchSpace, binarizer: Binarizer) -> str | None:
        missing = sorted({CELLS, MIXING} - set(space.capabilities))
        if missing:
            return (f"it samples one op per edge through the supernet's cell structure and "
                    f"mixing(), and the search space lacks the capabilities {missing}")
        return None

    def setup(self, env: SearchEnv) -> None:
        import torch

        problem = self.check_compatible(env.space, env.binarizer)
        if problem:
            raise ValueError(f"gdas cannot run: {problem}")
        self.generator = torch.Generator().manual_seed(env.seed)
        self.tau = self.config.tau_max
        super().setup(env)

    def loss_functions(self) -> dict[str, Any]:
        """DARTS' losses, each evaluated on a fresh sample of one op per edge."""
        from automl_bin.training import cross_entropy_loss

        base = super().loss_functions()

        def sampled(inner: Any) -> Any:
            def loss(net: Any, x: torch.Tensor, y: torch.Tensor) -> Any:
                with net.mixing(self.sample()):
                    return inner(net, x, y)
            return loss

        return {key: sampled(base.get(key, cross_entropy_loss))
                for key in ("train_loss", "val_loss")}

    def sample(self) -> dict[str, torch.Tensor]:
        """Per cell type, one straight-through Gumbel-softmax sample per edge, ``(edges, ops)``:
        one-hot in value, differentiable in α."""
        import torch
        import torch.nn.functional as F

        from automl_bin.nn.mixed_op import hard_one_hot

        out = {}
        for kind, alpha in self.supernet.alphas().items():
            # drawn on the CPU generator: the same paths on every device and rank
            u = torch.empty(alpha.shape).exponential_(generator=self.generator)
            gumbel = -u.clamp_min(torch.finfo(u.dtype).tiny).log().to(alpha.device)
            soft = F.softmax((F.log_softmax(alpha, dim=-1) + gumbel) / self.tau, dim=-1)
            out[kind] = hard_one_hot(soft)
        return out

    def argmax_weights(self) -> dict[str, torch.Tensor]:
        """Per cell type, the one-hot of each edge's strongest op (a constant)."""
        import torch

        return {k: torch.zeros_like(a).scatter_(-1, a.detach().argmax(-1, keepdim=True), 1.0)
                for k, a in self.supernet.alphas().items()}

    def begin_epoch(self, plan: EpochPlan) -> None:
        cfg = self.config
        self.tau = temperature(plan.epoch, cfg.epochs, cfg.tau_max, cfg.tau_min)

    def extra_metrics(self, plan: EpochPlan) -> dict[str, float]:
        return {"tau": self.tau}

    def evaluate(self, plan: EpochPlan) -> dict[str, float]:
        """``val_*`` of the argmax path (one op per edge), not of the softmax mixture."""
        with self.supernet.mixing(self.argmax_weights()):
            return super().evaluate(plan)

    def extra_state(self) -> dict[str, Any]:
        return {"gumbel_rng": self.generator.get_state(), "tau": self.tau}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["gumbel_rng"])
        self.tau = float(state["tau"])
