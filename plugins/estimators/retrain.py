"""The ``retrain`` estimator: train the genotype's discrete network from scratch and score it.

As the final step of a run it trains on the whole training set (train + val) and scores on the
test set; inside a search it trains on ``train`` and scores on ``val``. The network is built by
the search space with the recipe's binarizer; any auxiliary loss terms the binarizer declares are
added to the loss and logged. Defaults follow DARTS' CIFAR-10 retraining (spec §3.1); CPU
recipes shorten them.
"""

from __future__ import annotations

import time
from typing import Literal

import attrs

from automl_bin.interfaces import Estimate, EstimationEnv, Estimator, Genotype

__all__ = ["RetrainEstimator", "RetrainConfig"]

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)


@attrs.frozen(kw_only=True)
class RetrainConfig:
    #: training epochs (DARTS CIFAR-10: 600)
    epochs: int = attrs.field(default=600, validator=attrs.validators.ge(1))
    #: batch size; 0 = the recipe's [data] batch_size (DARTS: 96)
    batch_size: int = attrs.field(default=0, validator=_ge0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    #: initial lr, cosine-annealed to lr_min (DARTS: 0.025 → 0)
    lr: float = attrs.field(default=0.025, validator=_gt0)
    lr_min: float = attrs.field(default=0.0, validator=_ge0)
    momentum: float = attrs.field(default=0.9, validator=_ge0)
    weight_decay: float = attrs.field(default=3e-4, validator=_ge0)
    grad_clip: float = attrs.field(default=5.0, validator=_ge0)
    #: drop-path probability, ramped linearly over training (DARTS: 0.2)
    drop_path_prob: float = attrs.field(default=0.0, validator=_ge0)
    #: loss weight of the auxiliary head when [retrain] network.auxiliary = true (DARTS: 0.4)
    auxiliary_weight: float = attrs.field(default=0.4, validator=_ge0)
    #: random crop (pad 4) + horizontal flip of training images
    augment: bool = False
    #: cutout square side in pixels (DARTS: 16; 0 = off)
    cutout: int = attrs.field(default=0, validator=_ge0)
    label_smoothing: float = attrs.field(default=0.0, validator=_ge0)
    #: evaluate on the scoring split every this many epochs (and always after the last)
    eval_every: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    #: stop each epoch after this many steps (0 = all); for quick tries and tests
    max_steps: int = attrs.field(default=0, validator=_ge0)


class RetrainEstimator(Estimator):
    """Trains ``space.build_network(genotype)`` and returns its accuracy, params and FLOPs."""

    Config = RetrainConfig

    def estimate(self, genotype: Genotype, env: EstimationEnv) -> Estimate:
        import torch
        import torch.nn.functional as F

        from automl_bin.accounting import count_cost
        from automl_bin.training import RunningMeter, evaluate

        cfg = self.config
        start = time.perf_counter()
        torch.manual_seed(env.seed)
        net = env.space.build_network(genotype, env.input_shape, env.num_classes, env.binarizer,
                                      env.network).to(env.device)
        cost = count_cost(net, env.input_shape)
        train = env.splits[env.fit].with_options(
            batch_size=cfg.batch_size or None, augment=cfg.augment, cutout=cfg.cutout)
        score_split = env.splits[env.score]
        params = [p for p in net.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = len(train) if not cfg.max_steps else min(len(train), cfg.max_steps)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(1, cfg.epochs * steps_per_epoch), eta_min=cfg.lr_min)
        scored: dict[str, float] = {}
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            if hasattr(net, "set_drop_path"):
                net.set_drop_path(cfg.drop_path_prob * epoch / cfg.epochs)
            net.train()
            meter = RunningMeter()
            aux_totals: dict[str, float] = {}
            batches = (b for i, b in enumerate(train.batches(epoch)) if i < steps_per_epoch)
            for x, y in env.reporter.track(batches, steps_per_epoch, f"retrain epoch {epoch + 1}"):
                out = net(x)
                logits, aux_logits = out if isinstance(out, tuple) else (out, None)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                if aux_logits is not None:
                    loss = loss + cfg.auxiliary_weight * F.cross_entropy(aux_logits, y)
                for name, term in env.binarizer.aux_losses(net).items():
                    loss = loss + term
                    aux_totals[name] = aux_totals.get(name, 0.0) + float(term)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                meter.update(loss.detach(), logits.detach(), y)
            metrics = dict(meter.result("train"))
            metrics.update({k: v / max(steps_per_epoch, 1) for k, v in aux_totals.items()})
            metrics["lr"] = opt.param_groups[0]["lr"]
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                scored = evaluate(net, score_split.batches(0, shuffle=False), env.score)
                metrics.update(scored)
            metrics["epoch_seconds"] = time.perf_counter() - t0
            env.reporter.save_checkpoint(
                {"epoch": epoch, "model": net.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "genotype": genotype.to_json()},
                name="retrain_checkpoint.pt")
            env.reporter.log_epoch(epoch, metrics)
        metrics = {
            f"{env.score}_acc": scored[f"{env.score}_acc"],
            f"{env.score}_loss": scored[f"{env.score}_loss"],
            "params": float(cost.params),
            "flops": float(cost.flops),
            "bops": float(cost.bops),
            "retrain_seconds": time.perf_counter() - start,
        }
        return Estimate(genotype=genotype, score=metrics[f"{env.score}_acc"], metrics=metrics,
                        model=net)
