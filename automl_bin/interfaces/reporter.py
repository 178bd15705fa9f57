"""What strategies and estimators use to report progress, metrics and artifacts.

They never talk to MLflow or the terminal directly: the runner hands them a `Reporter` whose
calls become lifecycle hook calls (see `automl_bin.hookspecs`), so any tracker observes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["Reporter", "BatchSource"]

T = TypeVar("T")


@runtime_checkable
class Reporter(Protocol):
    """Reporting channel of one phase (``search`` or ``retrain``) of a run."""

    phase: str
    #: a fresh folder of this run where a component may write files before logging them
    work_dir: Path

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log scalar metrics at ``step`` (e.g. a pruning round) in this phase's tracked run."""

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Report a finished epoch of a loop the component owns (e.g. retraining)."""

    def save_checkpoint(self, state: Mapping[str, Any], name: str | None = None) -> Path:
        """Write ``state`` atomically (temp file + rename) into the run folder; returns the path.

        The default name is ``<phase>_checkpoint.pt``; what an estimator last saved under it is
        handed back as ``EstimationEnv.resume`` when the run is resumed. Tensors and plain data
        only: checkpoints are read with ``torch.load(weights_only=True)``. (A strategy's state
        is checkpointed by the runner through ``Strategy.state_dict``.)"""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Attach the file ``path`` to this phase's tracked run, under ``artifact_path``."""

    def log_json(self, name: str, data: Any) -> Path:
        """Write ``data`` as JSON to ``work_dir/name`` and attach it; returns the file."""

    def track(self, iterable: Iterable[T], total: int | None, description: str) -> Iterator[T]:
        """Iterate ``iterable`` while showing progress (a bar on a TTY, log lines otherwise)."""

    def info(self, message: str) -> None:
        """Print a one-line status message."""


class BatchSource(Protocol):
    """Mini-batches of one data split, normalised and on the run's device."""

    def __len__(self) -> int:
        """Batches per pass."""

    @property
    def num_samples(self) -> int:
        """Images in the split."""

    def with_options(self, *, batch_size: int | None = None, augment: bool | None = None,
                     cutout: int | None = None) -> BatchSource:
        """The same split with another batch size, crop/flip augmentation or cutout length."""

    def batches(self, epoch: int, shuffle: bool = True) -> Iterator[Any]:
        """Yield ``(images, labels)`` tensors for one pass; the order depends on the run seed and
        ``epoch`` only, so a resumed run sees the same batches."""
