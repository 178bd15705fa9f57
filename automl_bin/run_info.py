"""`RunInfo`: what lifecycle hooks learn about the run they observe."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from automl_bin.recipe import Recipe

__all__ = ["RunInfo"]


@attrs.define(kw_only=True)
class RunInfo:
    """One ``automl-bin run``: its recipe, tracked params and tags, and its output folder."""

    recipe: Recipe
    #: the recipe as run, as TOML text (written to ``run_dir/recipe.toml``)
    recipe_text: str
    #: the fresh output folder of this run (checkpoints, genotype.json, model)
    run_dir: Path
    #: flattened recipe keys and values, e.g. ``{"strategy.epochs": "3"}``
    params: Mapping[str, str]
    #: tags every tracked run carries (strategy, search_space, binarizer, dataset, versions)
    tags: Mapping[str, str]
    #: facts published by observers for the user (e.g. ``mlflow_run_id``); see `announce`
    announcements: dict[str, Any] = attrs.field(factory=dict)
    #: the components of the recipe, resolved (read-only for observers)
    resolved: Any = None
    #: per-observer scratch state for this run (e.g. a tracker's run ids); see `state_for`
    observer_state: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def announce(self, key: str, value: Any) -> None:
        """Publish a fact the CLI prints at the end of the run (e.g. the MLflow run id)."""
        self.announcements[key] = value

    def state_for(self, observer: str) -> dict[str, Any]:
        """A dict private to ``observer`` that lives as long as this run (no global state)."""
        return self.observer_state.setdefault(observer, {})
