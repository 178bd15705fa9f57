"""Divergence stops the run: non-finite losses, gradients or operation weights after an epoch.

A search that diverged (a learning rate far too large) would otherwise derive a genotype from NaN
α (every edge the same op), retrain it to ``test_loss = nan`` and finish as if nothing happened.
The runner calls `check_search_epoch` after each search epoch, before it is checkpointed (so the
last good checkpoint stays the one to resume from), and `check_metrics` on every retrain epoch
and the final estimate; the first non-finite quantity raises `NonFiniteError`, which ends the
run FAILED with the phase, the epoch, the quantity and the key to lower.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from automl_bin.errors import AutomlBinError

__all__ = ["NonFiniteError", "check_metrics", "check_search_epoch", "first_non_finite"]


class NonFiniteError(AutomlBinError):
    """A loss, gradient or architecture weight became NaN or infinite (exit 1, run FAILED)."""


def _non_finite_value(value: Any) -> bool:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return not math.isfinite(float(value))
    if hasattr(value, "isfinite"):  # a tensor (or an array-like offering it)
        import torch

        tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        return bool(tensor.is_floating_point() and not torch.isfinite(tensor).all())
    if isinstance(value, (list, tuple)):
        return any(_non_finite_value(v) for v in value)
    return False


def first_non_finite(values: Mapping[str, Any]) -> str | None:
    """The first key (in order) whose value is or holds a NaN or an infinity, else None."""
    for key, value in values.items():
        if _non_finite_value(value):
            return str(key)
    return None


def _raise(phase: str, epoch: int, what: str, keys: str, *, resumable: bool) -> None:
    kept = (" The checkpoint of the last finite epoch is kept; continue from it after lowering "
            "the value with `automl-bin run --resume RUN --allow-changes KEY`."
            if resumable and epoch > 0 else "")
    raise NonFiniteError(
        f"The {phase} diverged at epoch {epoch + 1}: {what} is not finite (NaN or infinite), so "
        f"nothing learned from it can be trusted and no genotype or model is derived from it. "
        f"Lower {keys} in the recipe (or use a warm-up or gradient clipping if the strategy "
        f"offers one) and run it again.{kept}")


def check_metrics(phase: str, epoch: int, metrics: Mapping[str, Any], keys: str, *,
                  resumable: bool = False) -> None:
    """Raise `NonFiniteError` naming the first non-finite metric of ``metrics``."""
    bad = first_non_finite(metrics)
    if bad is not None:
        _raise(phase, epoch, f"the metric {bad!r} ({metrics[bad]})", keys, resumable=resumable)


def check_search_epoch(epoch: int, metrics: Mapping[str, Any], op_weights: Mapping[str, Any]
                       | None, arch_parameters: Iterable[Any]) -> None:
    """After search epoch ``epoch``: its metrics (losses, gradient norms), then the
    operation weights and architecture parameters (α) must be finite."""
    check_metrics("search", epoch, metrics, "`[strategy] lr` (weights) or `[strategy] "
                  "arch_lr` (architecture)", resumable=True)
    bad = first_non_finite(dict(op_weights or {}))
    if bad is not None:
        _raise("search", epoch, f"the operation weights of cell {bad!r}",
               "`[strategy] arch_lr` (architecture) or `[strategy] lr`", resumable=True)
    for index, alpha in enumerate(arch_parameters):
        if _non_finite_value(alpha.detach()):
            _raise("search", epoch, f"the architecture parameter α #{index}",
                   "`[strategy] arch_lr` (architecture) or `[strategy] lr`", resumable=True)
