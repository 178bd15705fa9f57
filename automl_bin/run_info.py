"""`RunInfo`: what lifecycle hooks learn about the run they observe."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from automl_bin.recipe import Recipe
from automl_bin.tracking.names import recipe_params

__all__ = ["RunInfo", "SuiteInfo"]


@attrs.define(kw_only=True)
class SuiteInfo:
    """One suite (several runs from one recipe file): what ``on_suite_*`` hooks observe."""

    #: the experiment name every member run shares
    name: str
    #: the first member's recipe: its [experiment], [data] and [tracking] are every member's
    recipe: Recipe
    #: the suite's recipe file as run (with its [[suite]], [sweep] and seeds), as TOML text
    recipe_text: str
    #: the suite's own folder (recipe.toml, suite.json, comparison table and plots)
    run_dir: Path
    #: the members' run names, in run order (``label [key=value] s<seed>``)
    members: tuple[str, ...]
    #: the swept recipe keys
    sweep_keys: tuple[str, ...] = ()
    #: tags of the suite's own tracked run
    tags: Mapping[str, str] = attrs.field(factory=dict)
    #: files the suite produced at its end (attach them to the suite's run)
    artifacts: list[Path] = attrs.field(factory=list)
    announcements: dict[str, Any] = attrs.field(factory=dict)
    observer_state: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    #: set when the suite continues an interrupted one: that suite's announcements (e.g.
    #: ``mlflow_suite_run_id``), so a tracker reopens the same suite run
    resume: Mapping[str, Any] | None = None

    def announce(self, key: str, value: Any) -> None:
        """Publish a fact the CLI prints at the end of the suite (e.g. its MLflow run id)."""
        self.announcements[key] = value

    def state_for(self, observer: str) -> dict[str, Any]:
        """A dict private to ``observer`` that lives as long as the suite."""
        return self.observer_state.setdefault(observer, {})


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
    #: the suite this run belongs to (a tracker nests the run under the suite's run), or None
    suite: SuiteInfo | None = None
    #: set when the run continues an interrupted one: the announcements of that run (e.g.
    #: ``mlflow_run_id``), so a tracker reopens the same run instead of creating a new one
    resume: Mapping[str, Any] | None = None

    @property
    def tracked_params(self) -> dict[str, str]:
        """The params a tracker records: `params` with every resolved setting added, plugin
        defaults included (`automl_bin.tracking.names.recipe_params`), so that e.g.
        ``strategy.lambda_tangent`` is tracked even when the recipe does not set it. Without
        `resolved`, just `params`."""
        if self.resolved is None:
            return dict(self.params)
        return {**self.params, **recipe_params(self.resolved)}

    def announce(self, key: str, value: Any) -> None:
        """Publish a fact the CLI prints at the end of the run (e.g. the MLflow run id)."""
        self.announcements[key] = value

    def state_for(self, observer: str) -> dict[str, Any]:
        """A dict private to ``observer`` that lives as long as this run (no global state)."""
        return self.observer_state.setdefault(observer, {})
