"""Resuming an interrupted run: what it had finished, where it continues, the files saying so.

Every search epoch ends with an atomic ``search_checkpoint.pt`` in the run folder
(`search_checkpoint`): the strategy's state, the RNG states (torch, Python, NumPy), the
per-epoch metrics and operation-weight snapshots so far, the search seconds spent, and the run's
announcements (its MLflow run id). Beside it, ``<phase>_logged_epoch`` holds the last epoch
whose metrics reached the observers (`mark_logged`; checkpoints are written first, so a resumed
run re-reports an epoch cut off between, `replay_reported`), and ``search_done`` marks a search
whose genotype and plots reached them (`mark_search_done`).

`find_resume_point` turns a run folder or a checkpoint file (the CLI also accepts an MLflow run
id) into a `ResumePoint`; the runner then rebuilds the strategy, loads that state, restores the
RNGs (`ResumePoint.restore_search`) and continues with the next epoch in the same folder and the
same MLflow run, so a resumed CPU search derives the same genotype as an uninterrupted one. A
run stopped while retraining skips its finished search and hands the estimator its last
``retrain_checkpoint.pt`` (`ResumePoint.retrain_state`,
`automl_bin.interfaces.EstimationEnv.resume`). Checkpoints are read with
``torch.load(weights_only=True)``: a checkpoint file cannot execute code.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from automl_bin.checkpoint import save_atomic, write_text_atomic
from automl_bin.errors import StopRun, UsageError

if TYPE_CHECKING:
    from automl_bin.interfaces import Genotype, Strategy

__all__ = ["CHECKPOINT", "CHECKPOINT_FORMAT", "RETRAIN_CHECKPOINT", "SEARCH_DONE", "ResumePoint",
           "capture_rng", "check_recipe_changes", "find_resume_point", "load_checkpoint", "load_state", "logged_epoch",
           "mark_logged", "mark_search_done", "recipe_changes", "replay_reported", "restore_rng", "save_checkpoint",
           "search_checkpoint"]

CHECKPOINT = "search_checkpoint.pt"
#: the retrain phase's checkpoint, written by its estimator (`EstimationEnv.resume`)
RETRAIN_CHECKPOINT = "retrain_checkpoint.pt"
#: bumped when the checkpoint layout changes incompatibly
CHECKPOINT_FORMAT = 2
#: written once the search phase, its genotype and plots have reached the observers
SEARCH_DONE = "search_done"


@attrs.frozen(kw_only=True)
class ResumePoint:
    """Where an interrupted run continues."""

    run_dir: Path
    #: the run's recipe as it ran (its run folder's recipe.toml)
    recipe_text: str
    #: the checkpoint (see the module docstring); ``epoch`` is the last finished search epoch
    checkpoint: Mapping[str, Any] = attrs.field(repr=False)

    #: recipe keys whose change since the checkpoint ``--allow-changes`` accepted:
    #: ``{key: (before, after)}`` (`recipe_changes`)
    accepted_changes: Mapping[str, tuple[str | None, str | None]] = attrs.field(factory=dict)

    @property
    def stored_recipe_text(self) -> str:
        """The recipe the checkpoint was written with."""
        return str(self.checkpoint.get("recipe", self.recipe_text))

    @property
    def next_epoch(self) -> int:
        return int(self.checkpoint["epoch"]) + 1

    @property
    def announcements(self) -> Mapping[str, Any]:
        return self.checkpoint.get("announcements", {})

    @property
    def search_done(self) -> bool:
        """The run was stopped while retraining: its search was reported in full."""
        return (self.run_dir / SEARCH_DONE).is_file()

    @property
    def search_seconds(self) -> float:
        """Search seconds spent before the interruption."""
        return float(self.checkpoint["search_seconds"])

    @property
    def reported_epochs(self) -> list[tuple[int, dict[str, float]]]:
        """``(epoch, metrics)`` of every finished search epoch."""
        return [(int(e), dict(m)) for e, m in self.checkpoint["epochs"]]

    @property
    def op_weights(self) -> list[tuple[int, Mapping[str, list[list[float]]]]]:
        """``(epoch, weights)`` of every operation-weight snapshot so far."""
        return [(int(e), w) for e, w in self.checkpoint["op_weights"]]

    def restore_search(self, strategy: Strategy) -> None:
        """Put the strategy (already set up) and the RNGs back as they were after the last
        finished search epoch."""
        strategy.load_state_dict(self.checkpoint["strategy"])
        restore_rng(self.checkpoint["rng"])

    def retrain_state(self) -> dict[str, Any] | None:
        """The retrain phase's last checkpoint (every rank reads rank 0's folder), or None when
        retraining had not finished an epoch."""
        path = self.run_dir / RETRAIN_CHECKPOINT
        if not path.is_file():
            return None
        state = load_state(path)
        if not isinstance(state, dict):
            raise UsageError(f"{str(path)!r} is not a retrain checkpoint; delete it to retrain "
                             "from the beginning.")
        return state


def capture_rng() -> dict[str, Any]:
    """The global RNG states as plain data and tensors (loadable with weights_only=True)."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                      "has_gauss": has_gauss, "gauss": gauss}}


def restore_rng(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))


def load_state(path: Path) -> Any:
    """Read any checkpoint file safely (no pickle code execution), or explain why it cannot be."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise UsageError(f"Checkpoint {str(path)!r} cannot be read ({detail}). It is truncated, "
                         "corrupt, or not an automl-bin checkpoint; automl-bin only loads plain "
                         "tensors and data from checkpoints (weights_only), never code.") from exc


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a search checkpoint safely, or explain why it cannot be resumed."""
    state = load_state(path)
    if not isinstance(state, dict) or "epoch" not in state or "strategy" not in state:
        raise UsageError(f"{str(path)!r} is not an automl-bin search checkpoint (no epoch and "
                         "strategy state).")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"Checkpoint {str(path)!r} has format {state.get('format')!r}, this "
                         f"automl-bin writes format {CHECKPOINT_FORMAT}; it cannot be resumed "
                         "with this version. Re-run the recipe instead.")
    return state


def find_resume_point(target: str | Path) -> ResumePoint:
    """The resume point of a run folder or its checkpoint file."""
    target = Path(target)
    if not target.exists():
        raise UsageError(f"{str(target)!r} does not exist: pass a run folder, its {CHECKPOINT} "
                         "or an MLflow run id.")
    folder = target.parent if target.is_file() else target
    summary = folder / "summary.json"
    if summary.is_file():
        try:
            status = json.loads(summary.read_text(encoding="utf-8")).get("status")
        except (OSError, ValueError):
            status = None
        if status == "FINISHED":
            raise UsageError(f"The run in {str(folder)!r} already FINISHED; there is nothing to "
                             "resume. Re-run it with `automl-bin run --from-run RUN_ID`.")
    checkpoint = target if target.is_file() else folder / CHECKPOINT
    recipe = folder / "recipe.toml"
    if not checkpoint.is_file() or not recipe.is_file():
        missing = checkpoint if not checkpoint.is_file() else recipe
        raise UsageError(f"Cannot resume {str(folder)!r}: it has no {missing.name} (a run "
                         "stopped before its first search epoch finished has nothing to resume; "
                         "run the recipe again).")
    return ResumePoint(run_dir=folder, recipe_text=recipe.read_text(encoding="utf-8"),
                       checkpoint=load_checkpoint(checkpoint))


def recipe_changes(before: str, after: str) -> dict[str, tuple[str | None, str | None]]:
    """``{key: (before, after)}`` of every flattened recipe key (``strategy.epochs``) whose value
    differs between two recipe texts; None stands for a key one of them lacks."""
    import tomllib

    from automl_bin.recipe import flatten

    old, new = flatten(tomllib.loads(before)), flatten(tomllib.loads(after))
    return {key: (old.get(key), new.get(key)) for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key)}


def _allowed(key: str, allowed: Sequence[str]) -> bool:
    """``strategy.epochs`` is allowed by itself and by its table ``strategy``."""
    return any(key == a or key.startswith(a.rstrip(".") + ".") for a in allowed)


def check_recipe_changes(point: ResumePoint, allowed: Sequence[str] = ()) -> ResumePoint:
    """``point`` with the changes of its run folder's recipe.toml since its checkpoint
    accepted, or a `UsageError` listing them when any is not in ``allowed`` (``--allow-changes``
    keys or tables). A resumed run must not silently run another recipe than it tracked."""
    try:
        changes = recipe_changes(point.stored_recipe_text, point.recipe_text)
    except ValueError as exc:  # tomllib.TOMLDecodeError: the run folder's recipe was broken
        raise UsageError(f"{str(point.run_dir / 'recipe.toml')!r} is not valid TOML any more "
                         f"({exc}); restore it, or start a new run.") from exc
    refused = {k: v for k, v in changes.items() if not _allowed(k, allowed)}
    if refused:
        diff = "; ".join(f"{k}: {_shown(a)} -> {_shown(b)}" for k, (a, b) in refused.items())
        keys = " ".join(refused)
        raise UsageError(
            f"The recipe.toml of {str(point.run_dir)!r} changed since its checkpoint was written "
            f"({diff}). A resumed run continues the recipe it started with and tracked; restore "
            "those values, or, if the change is safe for the run (more epochs, say, not another "
            "network), accept it with --allow-changes "
            f"{keys} (it is then printed and recorded in the run). To run the new recipe from "
            "the start, use `automl-bin run` on it.")
    return attrs.evolve(point, accepted_changes=changes)


def _shown(value: str | None) -> str:
    return "(absent)" if value is None else value


def search_checkpoint(*, epoch: int, strategy_state: Mapping[str, Any], recipe_text: str,
                      search_seconds: float, epochs: Sequence[tuple[int, Mapping[str, Any]]],
                      op_weights: Sequence[tuple[int, Mapping[str, Any]]],
                      announcements: Mapping[str, Any]) -> dict[str, Any]:
    """The search checkpoint after ``epoch`` (see the module docstring); the RNG states are
    captured now. ``epochs`` holds every reported epoch, ``epoch`` included."""
    return {"format": CHECKPOINT_FORMAT, "epoch": epoch, "strategy": strategy_state,
            "rng": capture_rng(), "recipe": recipe_text, "search_seconds": search_seconds,
            "epochs": [[e, m] for e, m in epochs],
            "op_weights": [[e, dict(w)] for e, w in op_weights],
            "announcements": _plain(announcements)}


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-plain entries of ``values`` (what a weights_only checkpoint may hold)."""
    return {str(k): v for k, v in values.items()
            if isinstance(v, (str, int, float, bool)) or v is None}


def save_checkpoint(state: Mapping[str, Any], path: Path) -> Path:
    """Write a checkpoint; a full disk stops the run resumably, with the fix."""
    try:
        return save_atomic(state, path)
    except OSError as exc:
        kept = "the previous checkpoint is intact" if path.exists() else "no checkpoint exists yet"
        raise StopRun(f"Could not write the checkpoint {path} ({exc.strerror or exc}); "
                      f"{kept}. Free space on that disk (or fix its permissions).") from exc


def _logged_marker(phase: str) -> str:
    """The file holding the last epoch of ``phase`` whose metrics reached the observers
    (checkpoints are written first, so a resumed run re-reports an epoch cut off between)."""
    return f"{phase}_logged_epoch"


def mark_logged(run_dir: Path, phase: str, epoch: int) -> None:
    """Record that ``epoch`` of ``phase`` reached the observers."""
    write_text_atomic(run_dir / _logged_marker(phase), str(epoch))


def logged_epoch(run_dir: Path, phase: str) -> int:
    """The last epoch of ``phase`` that reached the observers; -1 when none did."""
    try:
        return int((run_dir / _logged_marker(phase)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return -1


def mark_search_done(run_dir: Path, genotype: Genotype) -> None:
    """Record that the search, its genotype and plots reached the observers."""
    write_text_atomic(run_dir / SEARCH_DONE, genotype.to_json())


class EpochLog(Protocol):
    """What `replay_reported` needs of a phase's reporter (`automl_bin.phase_reporter`)."""

    phase: str
    #: ``(epoch, metrics)`` reported so far
    epochs: list[tuple[int, dict[str, float]]]

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None: ...


def replay_reported(reporter: EpochLog, reported: Any, run_dir: Path) -> None:
    """Put a resumed phase's reported epochs back in its curves, and report the last one
    again when its logging was cut off (it was checkpointed first)."""
    history = [(int(e), dict(m)) for e, m in reported or []]
    if not history:
        return
    reporter.epochs.extend(history[:-1])
    last, last_metrics = history[-1]
    if logged_epoch(run_dir, reporter.phase) < last:
        reporter.log_epoch(last, last_metrics)
        mark_logged(run_dir, reporter.phase, last)
    else:
        reporter.epochs.append((last, last_metrics))
