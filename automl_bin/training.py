"""Training loops shared by strategies and estimators: weight optimizers, epochs, evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SgdConfig", "make_sgd", "cosine_lr", "evaluate", "RunningMeter", "accuracy"]


@attrs.frozen(kw_only=True)
class SgdConfig:
    """SGD with momentum and a cosine schedule (DARTS search defaults, docs/algorithms.md)."""

    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0


def make_sgd(params: Iterable[nn.Parameter], cfg: SgdConfig) -> torch.optim.SGD:
    return torch.optim.SGD(list(params), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def cosine_lr(cfg: SgdConfig, epoch: int, epochs: int) -> float:
    """The learning rate of ``epoch`` under cosine annealing from lr to lr_min."""
    if epochs <= 1:
        return cfg.lr
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * epoch / epochs))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())


class RunningMeter:
    """Sample-weighted running mean of loss and accuracy over an epoch."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.correct = 0.0
        self.count = 0

    def update(self, loss: torch.Tensor | float, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = int(labels.shape[0])
        self.loss += float(loss) * n
        self.correct += float((logits.argmax(dim=1) == labels).sum())
        self.count += n

    def result(self, prefix: str) -> dict[str, float]:
        n = max(self.count, 1)
        return {f"{prefix}_loss": self.loss / n, f"{prefix}_acc": self.correct / n}


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             prefix: str = "val", max_batches: int | None = None) -> dict[str, float]:
    """Loss and accuracy of ``model`` in eval mode over ``batches``."""
    was_training = model.training
    model.eval()
    meter = RunningMeter()
    for i, (x, y) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        logits = _logits(model(x))
        meter.update(F.cross_entropy(logits, y), logits, y)
    model.train(was_training)
    return meter.result(prefix)


def _logits(out: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def clip_and_step(params: Sequence[nn.Parameter], optimizer: torch.optim.Optimizer,
                  grad_clip: float) -> None:
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The default loss: ``(CE(model(x), y), logits)``."""
    logits = _logits(model(x))
    return F.cross_entropy(logits, y), logits
