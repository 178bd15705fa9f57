"""The ``retrain`` estimator: train the genotype's discrete network from scratch and score it.

As the final step of a run it trains on the whole training set (train + val) and scores on the
test set; inside a search it trains on ``train`` and scores on ``val``. The network is built by
the search space with the recipe's binarizer; auxiliary loss terms the binarizer declares
(e.g. reconstruction, compactness) are added to the loss and logged.

1-bit options (docs/algorithms.md §Two-step training): ``two_step`` first trains with binary
activations and real weights (``step1_epochs``), then binarizes the weights too and continues
from those weights; ``teacher = "real"`` first trains a real-valued copy of the same
architecture and then distils it into the 1-bit network with the distribution loss
−Σ softmax(teacher)·log_softmax(student) (ReActNet; the DCP-NAS retraining uses it without CE:
``distill_weight = 1``).

Defaults follow DARTS' CIFAR-10 retraining (docs/algorithms.md §Network skeleton and the 1-bit
convention); CPU recipes shorten them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import attrs

from automl_bin.interfaces import Estimate, EstimationEnv, Estimator, Genotype

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["RetrainEstimator", "RetrainConfig"]

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)


@attrs.frozen(kw_only=True)
class RetrainConfig:
    #: training epochs (DARTS CIFAR-10: 600); with two_step, the epochs of step 2
    epochs: int = attrs.field(default=600, validator=attrs.validators.ge(1))
    #: batch size; 0 = the recipe's [data] batch_size (DARTS: 96)
    batch_size: int = attrs.field(default=0, validator=_ge0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    #: initial lr, cosine-annealed to lr_min (DARTS: 0.025 → 0; DCP-NAS AdamW: 1e-3)
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
    #: two-step 1-bit training: step 1 real weights + binary activations, step 2 all binary
    two_step: bool = False
    #: epochs of step 1 (used when two_step)
    step1_epochs: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    #: weight decay of step 1 (DCP-NAS: 1e-5 in step 1, 0 in step 2); None = weight_decay
    step1_weight_decay: float | None = None
    #: "real": distil from a real-valued copy of the architecture trained first
    teacher: Literal["none", "real"] = "none"
    teacher_epochs: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    #: loss = w·distribution(teacher ‖ student) + (1 − w)·CE; 1 = no CE (the DCP-NAS recipe)
    distill_weight: float = attrs.field(default=1.0, validator=[_ge0, attrs.validators.le(1.0)])
    #: evaluate on the scoring split every this many epochs (and always after the last)
    eval_every: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    #: stop each epoch after this many steps (0 = all); for quick tries and tests
    max_steps: int = attrs.field(default=0, validator=_ge0)


@attrs.frozen
class _Stage:
    name: str
    epochs: int
    weight_decay: float
    binary_weights: bool


#: bumped when the layout of ``retrain_checkpoint.pt`` changes incompatibly
RETRAIN_CHECKPOINT_FORMAT = 1


@attrs.define
class _Progress:
    """What carries over from stage to stage (and through a checkpoint)."""

    #: the global step (epoch counter over all stages) the next stage starts at
    step: int = 0
    #: the last evaluation on the scoring split
    scored: dict[str, float] = attrs.field(factory=dict)
    #: ``[[step, metrics], ...]`` of every epoch reported so far
    reported: list[list[Any]] = attrs.field(factory=list)
    #: training seconds spent before this process (a resumed run's earlier part)
    seconds_before: float = 0.0
    #: the finished teacher's weights, saved with every later checkpoint
    teacher_state: Any = None


class RetrainEstimator(Estimator):
    """Trains ``space.build_network(genotype)`` and returns its accuracy, size and cost.

    Every epoch of the final retraining (``fit = "train_full"``) ends with
    ``retrain_checkpoint.pt`` (stage, epoch, weights, optimizer, scheduler, RNG states and the
    finished teacher); given it as ``env.resume`` the estimator continues after that epoch and
    ends as an uninterrupted run would. Inside a search the search checkpoint covers it.
    """

    Config = RetrainConfig
    supports_data_parallel = True

    def estimate(self, genotype: Genotype, env: EstimationEnv) -> Estimate:
        import torch

        from automl_bin.accounting import report
        from automl_bin.nn.qconv import set_weight_binarization

        cfg = self.config
        start = time.perf_counter()
        torch.manual_seed(env.seed)
        net = self._build(genotype, env, env.binarizer)
        cost = report(net, env.input_shape)
        stages: list[_Stage] = []
        teacher = None
        if cfg.teacher == "real" and env.binarizer.is_binary:
            if env.create is None:
                raise ValueError("teacher = 'real' needs env.create to build the real binarizer")
            teacher = self._build(genotype, env, env.create("binarizer", "none"))
            stages.append(_Stage("teacher", cfg.teacher_epochs, cfg.weight_decay, True))
        if cfg.two_step and env.binarizer.is_binary:
            wd1 = cfg.weight_decay if cfg.step1_weight_decay is None else cfg.step1_weight_decay
            stages.append(_Stage("step1", cfg.step1_epochs, wd1, False))
        stages.append(_Stage("final", cfg.epochs, cfg.weight_decay, True))

        progress = _Progress()
        resume_at = -1  # index of the stage the checkpoint was written in
        if env.resume is not None:
            progress, resume_at = self._resume_point(env.resume, stages)
            if teacher is not None and progress.teacher_state is not None:
                teacher.load_state_dict(progress.teacher_state)
                teacher.eval()
        for index, stage in enumerate(stages):
            if index < resume_at:
                continue
            model = teacher if stage.name == "teacher" else net
            assert model is not None
            if stage.name != "teacher":
                set_weight_binarization(net, stage.binary_weights)
            self._train(model, env, stage, teacher if stage.name != "teacher" else None,
                        progress, env.resume if index == resume_at else None, start)
            if stage.name == "teacher":
                assert teacher is not None
                teacher.eval()
                progress.teacher_state = teacher.state_dict()
        scored = progress.scored
        metrics = {
            f"{env.score}_acc": scored[f"{env.score}_acc"],
            f"{env.score}_loss": scored[f"{env.score}_loss"],
            **cost.metrics(),
            "retrain_seconds": progress.seconds_before + time.perf_counter() - start,
        }
        return Estimate(genotype=genotype, score=metrics[f"{env.score}_acc"], metrics=metrics,
                        model=net)

    @staticmethod
    def _resume_point(state: Any, stages: list[_Stage]) -> tuple[_Progress, int]:
        """The carried-over progress and the stage index of a retrain checkpoint."""
        names = [s.name for s in stages]
        if state.get("format") != RETRAIN_CHECKPOINT_FORMAT or state.get("stage") not in names:
            raise ValueError(
                "The retrain checkpoint was written by another automl-bin version or another "
                f"[retrain] configuration (stage {state.get('stage')!r}, format "
                f"{state.get('format')!r}; this run has stages {names}). Delete it from the run "
                "folder to retrain from the beginning.")
        progress = _Progress(step=int(state["step"]), scored=dict(state["scored"]),
                             reported=[[int(e), dict(m)] for e, m in state["reported_epochs"]],
                             seconds_before=float(state["seconds"]),
                             teacher_state=state.get("teacher"))
        return progress, names.index(state["stage"])

    def _build(self, genotype: Genotype, env: EstimationEnv, binarizer: Any) -> nn.Module:
        return env.space.build_network(genotype, env.input_shape, env.num_classes, binarizer,
                                       env.network).to(env.device)

    def _optimizer(self, net: nn.Module, weight_decay: float) -> torch.optim.Optimizer:
        import torch

        params = [p for p in net.parameters() if p.requires_grad]
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.config.lr, momentum=self.config.momentum,
                                   weight_decay=weight_decay)
        return torch.optim.AdamW(params, lr=self.config.lr, weight_decay=weight_decay)

    def _train(self, net: nn.Module, env: EstimationEnv, stage: _Stage,
               teacher: nn.Module | None, progress: _Progress, restore: Any,
               start: float) -> None:
        """Train ``net`` for one stage, reporting each epoch at global step
        ``progress.step + epoch``; ``restore`` is a checkpoint of this stage to continue from.

        Leaves the next stage's global step and the last evaluation in ``progress``.
        """
        import torch
        import torch.nn.functional as F

        from automl_bin import distributed
        from automl_bin.nn.features import capture_features
        from automl_bin.resume import restore_rng
        from automl_bin.training import RunningMeter, evaluate

        cfg = self.config
        train = env.splits[env.fit].with_options(
            batch_size=cfg.batch_size or None, augment=cfg.augment, cutout=cfg.cutout)
        steps = len(train) if not cfg.max_steps else min(len(train), cfg.max_steps)
        opt = self._optimizer(net, stage.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(1, stage.epochs * steps), eta_min=cfg.lr_min)
        first_epoch = 0
        if restore is not None:
            net.load_state_dict(restore["model"])
            opt.load_state_dict(restore["optimizer"])
            sched.load_state_dict(restore["scheduler"])
            restore_rng(restore["rng"])
            first_epoch = int(restore["epoch"]) + 1
            env.reporter.info(f"Resuming retraining: stage {stage.name}, epoch "
                              f"{first_epoch + 1} of {stage.epochs}")
        params = [p for p in net.parameters() if p.requires_grad]
        distributed.broadcast_module(net, env.dist)  # a guard: the seeds already agree
        binarizer = env.binarizer if stage.name != "teacher" else None
        step = progress.step
        for epoch in range(first_epoch, stage.epochs):
            t0 = time.perf_counter()
            if hasattr(net, "set_drop_path"):
                net.set_drop_path(cfg.drop_path_prob * epoch / stage.epochs)
            net.train()
            meter = RunningMeter()
            aux_totals: dict[str, float] = {}
            # islice, not a filter: batches past max_steps are never cut out and normalised
            batches: Iterator[Any] = itertools.islice(train.batches(step + epoch), steps)
            label = f"retrain {stage.name} epoch {epoch + 1}/{stage.epochs}"
            for x, y in env.reporter.track(batches, steps, label):
                with capture_features(net) as feats:
                    out = net(x)
                logits, aux_logits = out if isinstance(out, tuple) else (out, None)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(x)
                        t_logits = t_out[0] if isinstance(t_out, tuple) else t_out
                    dist = -(F.softmax(t_logits, dim=1) * F.log_softmax(logits, dim=1)).sum(1).mean()
                    loss = cfg.distill_weight * dist + (1.0 - cfg.distill_weight) * loss
                if aux_logits is not None:
                    loss = loss + cfg.auxiliary_weight * F.cross_entropy(aux_logits, y)
                if binarizer is not None:
                    for name, term in binarizer.aux_losses(net, features=feats.value,
                                                           labels=y).items():
                        loss = loss + term
                        aux_totals[name] = aux_totals.get(name, 0.0) + float(term.detach())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                # data parallel: this rank's slice → the whole batch's gradient (no-op alone)
                distributed.all_reduce_grads(params, env.dist, len(y))
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                distributed.sync_buffers(net, env.dist)
                sched.step()
                meter.update(loss.detach(), logits.detach(), y)
            prefix = "teacher_" if stage.name == "teacher" else ""
            metrics = {prefix + k: v for k, v in meter.result("train").items()}
            metrics.update({k: v / max(steps, 1) for k, v in aux_totals.items()})
            metrics["lr"] = opt.param_groups[0]["lr"]
            metrics["stage"] = {"teacher": 0.0, "step1": 1.0, "final": 2.0}[stage.name]
            last = epoch + 1 == stage.epochs
            if (epoch + 1) % cfg.eval_every == 0 or last:
                scored = evaluate(net, env.splits[env.score].batches(0, shuffle=False), env.score)
                progress.scored = dict(scored)
                metrics.update({prefix + k: v for k, v in scored.items()})
            metrics["epoch_seconds"] = time.perf_counter() - t0
            progress.reported.append([step + epoch, metrics])
            if env.fit == "train_full":  # the final retraining (in a search, its checkpoint rules)
                self._checkpoint(env, stage, epoch, step, net, opt, sched, progress, start)
            env.reporter.log_epoch(step + epoch, metrics)
        progress.step = step + stage.epochs

    @staticmethod
    def _checkpoint(env: EstimationEnv, stage: _Stage, epoch: int, step: int, net: nn.Module,
                    opt: Any, sched: Any, progress: _Progress, start: float) -> None:
        """Written before the epoch is reported: a resumed run re-reports it if that was cut
        off."""
        from automl_bin.resume import capture_rng

        env.reporter.save_checkpoint({
            "format": RETRAIN_CHECKPOINT_FORMAT, "stage": stage.name, "epoch": epoch,
            "step": step, "model": net.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": capture_rng(),
            "scored": dict(progress.scored), "reported_epochs": progress.reported,
            "seconds": progress.seconds_before + time.perf_counter() - start,
            **({"teacher": progress.teacher_state} if progress.teacher_state is not None else {}),
        })
