"""Tracking conventions shared by the MLflow tracker plugin and the CLI commands.

The store is ``[tracking] uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``
spelled out as an absolute path (MLflow 3's own default made explicit), so that ``automl-bin
ui``, ``compare`` and announcements name the exact file the tracker wrote. Imports neither
mlflow nor torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from automl_bin.recipe import flatten

if TYPE_CHECKING:
    from automl_bin.recipe import ResolvedRecipe

__all__ = [
    "TRACKING_URI_ENV", "PARENT_TAG", "RUN_DIR_TAG", "ROLE_TAG", "ROLE_RUN", "ROLE_SUITE",
    "PHASE_TAG", "RESUMED_TAG", "INCOMPLETE_TAG", "GENOTYPE_TAG", "GENOTYPE_ID_TAG", "ERROR_TAG",
    "RECIPE_SHA_TAG", "SEARCH_SECONDS", "WEIGHT_IMAGES", "PARENT_SEARCH_METRICS",
    "resolve_tracking_uri", "sqlite_path", "missing_sqlite_store", "tracking_key",
    "recipe_params",
]

#: the environment variable MLflow itself reads for the store
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

# -- tags --------------------------------------------------------------------------------------
#: MLflow's own tag linking a nested run to its parent (phase runs; member runs of a suite)
PARENT_TAG = "mlflow.parentRunId"
#: the run folder (absolute path) of a run or suite, on its top-level tracked run
RUN_DIR_TAG = "automl_bin.run_dir"
#: what a top-level tracked run is: `ROLE_RUN` (one `automl-bin run`) or `ROLE_SUITE`
ROLE_TAG = "automl_bin.role"
ROLE_RUN = "run"
ROLE_SUITE = "suite"
#: the phase ("search", "retrain") of a nested phase run
PHASE_TAG = "phase"
#: "true" on a run (or suite) continued by ``--resume``
RESUMED_TAG = "automl_bin.resumed"
#: "true" when some tracking calls of the run failed
INCOMPLETE_TAG = "automl_bin.tracking_incomplete"
#: the genotype found (text, cut to MLflow's tag limit) and the id of its whole text
GENOTYPE_TAG = "genotype"
GENOTYPE_ID_TAG = "genotype_id"
#: the error that ended a failed run
ERROR_TAG = "error"
#: the recipe's hash; with no `ROLE_TAG`, it marks runs tracked before roles existed
RECIPE_SHA_TAG = "recipe_sha256"

# -- metrics -----------------------------------------------------------------------------------
#: wall-clock seconds of the search
SEARCH_SECONDS = "search_seconds"
#: images seen by weight steps during the search (the weight-training budget)
WEIGHT_IMAGES = "weight_images"
#: search metrics also logged on the parent run, where the comparison table reads them
PARENT_SEARCH_METRICS = (SEARCH_SECONDS, WEIGHT_IMAGES)

#: characters MLflow accepts in metric and param names; anything else becomes "_"
_BAD_KEY_CHARS = re.compile(r"[^\w\-. :/]")
#: MLflow's longest metric or param name
_MAX_KEY_LEN = 250


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``./mlflow.db``.

    The fallback is written as an absolute ``sqlite:///`` URI so that ``automl-bin ui`` and
    announcements name the exact file.
    """
    if uri:
        return uri
    env = os.environ.get(TRACKING_URI_ENV, "").strip()
    if env:
        return env
    return f"sqlite:///{(Path.cwd().resolve() / 'mlflow.db').as_posix()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute or relative to the cwd), else None."""
    if not uri.lower().startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).resolve()


def missing_sqlite_store(uri: str) -> str | None:
    """Where a ``sqlite:`` store that does not exist was expected (its file, else the URI);
    None for an existing file or a store of another kind.

    Commands that read runs refuse a missing store: ``MlflowClient`` would silently create an
    empty one, so a mistyped path would look like a store without runs.
    """
    if not uri.lower().startswith("sqlite:"):
        return None
    db = sqlite_path(uri)
    if db is not None and db.is_file():
        return None
    return str(db) if db is not None else uri


def tracking_key(name: str) -> str:
    """``name`` as an MLflow metric or param key: unsupported characters become ``_``, cut to
    MLflow's length limit."""
    return _BAD_KEY_CHARS.sub("_", str(name))[:_MAX_KEY_LEN]


def _fields(config: Any) -> dict[str, Any]:
    """The fields of an attrs config (nested attrs classes as dicts); none for other objects."""
    return attrs.asdict(config) if attrs.has(type(config)) else {}


def recipe_params(resolved: ResolvedRecipe) -> dict[str, str]:
    """Every resolved setting of a run as tracked params, plugin defaults included.

    Keys are the recipe's own: ``section.key`` (``strategy.lambda_tangent``,
    ``data.batch_size``, ``retrain.network.layers``, ``strategy.estimator_params.steps``), so a
    key a recipe sets and the same key left at its default are one MLflow param. Sections:
    ``[experiment]``, ``[data]`` (core keys and the data set's ``Config``), ``[search_space]``,
    ``[binarizer]`` and ``[strategy]`` (name and ``Config``), ``[retrain]`` (and, when enabled,
    its network size and the estimator's ``Config``), and the search estimator a strategy names.
    ``[tracking]`` is not part of the result and is left out.
    """
    recipe = resolved.recipe
    data = {k: v for k, v in _fields(recipe.data).items() if k != "params"}
    strategy = {"name": recipe.strategy.name, **_fields(resolved.strategy.config)}
    if resolved.search_estimator is not None:
        given = strategy.get("estimator_params")
        strategy["estimator_params"] = {**(given if isinstance(given, Mapping) else {}),
                                        **_fields(resolved.search_estimator.config)}
    retrain: dict[str, Any] = {"enabled": recipe.retrain.enabled,
                               "estimator": recipe.retrain.estimator}
    if resolved.retrain_estimator is not None:
        retrain["network"] = _fields(resolved.network)
        retrain.update(_fields(resolved.retrain_estimator.config))
    return flatten({
        "experiment": _fields(recipe.experiment),
        "data": {**data, **_fields(resolved.dataset.config)},
        "search_space": {"name": recipe.search_space.name, **_fields(resolved.search_space.config)},
        "binarizer": {"name": recipe.binarizer.name, **_fields(resolved.binarizer.config)},
        "strategy": strategy,
        "retrain": retrain,
    })
