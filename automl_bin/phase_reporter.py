"""`PhaseReporter`: the `automl_bin.interfaces.Reporter` the runner hands one phase.

It turns a strategy's or estimator's calls into lifecycle hook calls (``on_metrics``,
``on_epoch_end``, ``on_artifact``), prints each epoch's console line, and keeps the phase's
reported epochs for its curve plot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from automl_bin import resume
from automl_bin.checkpoint import write_text_atomic
from automl_bin.plugins import PluginSet, call_observers
from automl_bin.progress import Progress
from automl_bin.run_info import RunInfo

__all__ = ["PhaseReporter", "epoch_line"]

T = TypeVar("T")


class PhaseReporter:
    """The `automl_bin.interfaces.Reporter` of one phase: turns calls into hook calls."""

    def __init__(self, plugins: PluginSet, run: RunInfo, phase: str, progress: Progress, *,
                 mark_logged: bool = False) -> None:
        self.plugins = plugins
        #: record each reported epoch in the run folder (`automl_bin.resume.mark_logged`); the
        #: search loop does it itself, since estimators nested in a search report through it too
        self.mark_logged = mark_logged
        self.run = run
        self.phase = phase
        self.progress = progress
        self.work_dir = run.run_dir / phase
        self.work_dir.mkdir(parents=True, exist_ok=True)
        #: ``(epoch, metrics)`` of every `log_epoch`, for the phase's curve plot
        self.epochs: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        call_observers(self.plugins, "on_metrics", run=self.run, phase=self.phase,
                       metrics=dict(metrics), step=step)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.epochs.append((epoch, dict(metrics)))
        self.progress.info(epoch_line(self.phase, epoch, metrics))
        call_observers(self.plugins, "on_epoch_end", run=self.run, phase=self.phase, epoch=epoch,
                       metrics=dict(metrics))
        if self.mark_logged:  # reached the trackers: a resumed run does not report it again
            resume.mark_logged(self.run.run_dir, self.phase, epoch)

    def save_checkpoint(self, state: Mapping[str, Any], name: str | None = None) -> Path:
        name = name or f"{self.phase}_checkpoint.pt"
        if name == resume.CHECKPOINT:
            raise ValueError(f"{resume.CHECKPOINT} is the runner's search checkpoint; a strategy returns "
                             "its state from state_dict() and the runner saves it.")
        return resume.save_checkpoint(state, self.run.run_dir / name)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        call_observers(self.plugins, "on_artifact", run=self.run, phase=self.phase,
                       path=Path(path), artifact_path=artifact_path)

    def log_json(self, name: str, data: Any) -> Path:
        path = write_text_atomic(self.work_dir / name, json.dumps(data, indent=2, default=str))
        self.log_artifact(path)
        return path

    def track(self, iterable: Iterable[T], total: int | None, description: str) -> Iterator[T]:
        return self.progress.track(iterable, total, description)

    def info(self, message: str) -> None:
        self.progress.info(message)


def epoch_line(phase: str, epoch: int, metrics: Mapping[str, float]) -> str:
    """The console line of one reported epoch: its common metrics, in a fixed order."""
    keys = ("train_loss", "train_acc", "val_acc", "test_acc", "alpha_entropy", "alpha_margin",
            "epoch_seconds")
    # alpha entropy moves in the 4th decimal early in a search: show enough digits to see it
    shown = ", ".join(f"{k}={metrics[k]:.5f}" if k == "alpha_entropy" else f"{k}={metrics[k]:.4g}"
                      for k in keys if k in metrics)
    return f"[{phase}] epoch {epoch + 1}: {shown}"
