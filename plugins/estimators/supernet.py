"""The ``supernet`` estimator: score a genotype with the shared weights of a trained supernet.

The supernet runs only the genotype's edges and ops (single path). Batch-norm layers of a
supernet hold statistics mixed over many paths, so by default the path is scored with batch
statistics and the running statistics are restored afterwards (as single-path NAS does).
"""

from __future__ import annotations

from typing import Literal

import attrs

from automl_bin.interfaces import Estimate, EstimationEnv, Estimator, Genotype

__all__ = ["SupernetEstimator"]


@attrs.frozen(kw_only=True)
class SupernetEstimatorConfig:
    #: score on at most this many batches of the scoring split (0 = all of it)
    max_batches: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    #: "batch": BN uses the scored batch's statistics; "running": the supernet's running stats
    bn_stats: Literal["batch", "running"] = "batch"


class SupernetEstimator(Estimator):
    """Accuracy of the genotype's path through ``env.supernet`` on the scoring split."""

    Config = SupernetEstimatorConfig

    def estimate(self, genotype: Genotype, env: EstimationEnv) -> Estimate:
        import torch

        from automl_bin.training import RunningMeter

        net = env.supernet
        if net is None:
            raise ValueError("the 'supernet' estimator needs a trained supernet; use it inside a "
                             "weight-sharing search, or choose the 'retrain' estimator")
        env.space.validate_genotype(genotype)
        limit = self.config.max_batches or None
        saved = {n: b.clone() for n, b in net.named_buffers()}
        was_training = net.training
        net.train(self.config.bn_stats == "batch")
        net.set_fixed_architecture(genotype)
        meter = RunningMeter()
        try:
            with torch.no_grad():
                for i, (x, y) in enumerate(env.splits[env.score].batches(0, shuffle=False)):
                    if limit is not None and i >= limit:
                        break
                    logits = net(x)
                    meter.update(torch.nn.functional.cross_entropy(logits, y), logits, y)
        finally:
            net.set_fixed_architecture(None)
            net.train(was_training)
            with torch.no_grad():
                for n, b in net.named_buffers():
                    b.copy_(saved[n])
        metrics = meter.result(env.score)
        return Estimate(genotype=genotype, score=metrics[f"{env.score}_acc"], metrics=metrics)
