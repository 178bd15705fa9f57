"""Resuming an interrupted run from its search checkpoint.

Every search epoch ends with an atomic ``search_checkpoint.pt`` in the run folder: the
strategy's state, the RNG states (torch, Python, NumPy), the per-epoch metrics and
operation-weight snapshots so far, the search seconds spent, and the run's announcements (its
MLflow run id). `find_resume_point` turns a run folder or a checkpoint file (the CLI also
accepts an MLflow run id) into a `ResumePoint`; the runner then rebuilds the strategy, loads
that state, restores the RNGs and continues with the next epoch in the same folder and the same
MLflow run, so a resumed CPU search derives the same genotype as an uninterrupted one. A run
stopped while retraining skips its finished search and hands the estimator its last
``retrain_checkpoint.pt`` (`automl_bin.interfaces.EstimationEnv.resume`). Checkpoints are read with
``torch.load(weights_only=True)``: a checkpoint file cannot execute code.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from automl_bin.errors import UsageError

__all__ = ["CHECKPOINT", "CHECKPOINT_FORMAT", "ResumePoint", "capture_rng", "find_resume_point",
           "load_checkpoint", "load_state", "restore_rng"]

CHECKPOINT = "search_checkpoint.pt"
#: bumped when the checkpoint layout changes incompatibly
CHECKPOINT_FORMAT = 2


@attrs.frozen(kw_only=True)
class ResumePoint:
    """Where an interrupted run continues."""

    run_dir: Path
    #: the run's recipe as it ran (its run folder's recipe.toml)
    recipe_text: str
    #: the checkpoint (see the module docstring); ``epoch`` is the last finished search epoch
    checkpoint: Mapping[str, Any] = attrs.field(repr=False)

    @property
    def next_epoch(self) -> int:
        return int(self.checkpoint["epoch"]) + 1

    @property
    def announcements(self) -> Mapping[str, Any]:
        return self.checkpoint.get("announcements", {})


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
