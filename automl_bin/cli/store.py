"""Reading the MLflow store from commands (``compare``, ``run --from-run``, ``summary``).

MLflow is imported lazily; a store that does not exist is an error with the fix (MlflowClient
would silently create an empty one), never a new file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_bin.errors import UsageError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["default_uri", "open_client", "parent_run", "recipe_of_run", "uri_option_help"]

#: tags written by the MLflow tracker
RUN_DIR_TAG = "automl_bin.run_dir"
PARENT_TAG = "mlflow.parentRunId"
ROLE_TAG = "automl_bin.role"

uri_option_help = ("MLflow store to read. Default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///<current folder>/mlflow.db.")


def default_uri() -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return env or f"sqlite:///{(Path.cwd().resolve() / 'mlflow.db').as_posix()}"


def open_client(uri: str | None) -> tuple[MlflowClient, str]:
    """An ``MlflowClient`` of ``uri`` (default: `default_uri`), refusing missing sqlite files."""
    from automl_bin.cli.ui import sqlite_path

    uri = uri or default_uri()
    db = sqlite_path(uri)
    if uri.lower().startswith("sqlite:") and (db is None or not db.is_file()):
        where = str(db) if db is not None else uri
        raise UsageError(f"There is no MLflow store at {where}. Run the command in the folder "
                         "where you ran `automl-bin run` (it writes ./mlflow.db), or pass the "
                         "store with --uri sqlite:////path/to/mlflow.db.")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri), uri


def parent_run(client: MlflowClient, run_id: str, uri: str) -> Any:
    """The automl-bin run ``run_id`` names: itself, or the parent of a search/retrain run."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
        tags = run.data.tags
        if "phase" in tags and PARENT_TAG in tags:
            run = client.get_run(tags[PARENT_TAG])
    except MlflowException as exc:
        detail = " ".join(str(getattr(exc, "message", exc)).split())[:300]
        raise UsageError(f"{run_id!r} is not a run in the MLflow store {uri} ({detail}). Use a "
                         "run id shown by `automl-bin run`, `automl-bin compare --format json` "
                         "or the MLflow UI.") from exc
    return run


def recipe_of_run(run_id: str, uri: str | None) -> tuple[str, str]:
    """The recipe TOML a tracked run used, and where it came from.

    Read from the run's ``recipe.toml`` artifact (so it works for remote stores), else from the
    run folder its tags name.
    """
    client, uri = open_client(uri)
    run = parent_run(client, run_id, uri)
    rid = run.info.run_id
    try:
        with tempfile.TemporaryDirectory(prefix="automl-bin-recipe-") as tmp:
            path = Path(client.download_artifacts(rid, "recipe.toml", tmp))
            return path.read_text(encoding="utf-8"), f"recipe.toml of MLflow run {rid}"
    except Exception:  # no artifact (tracking failed mid-run): try the run folder
        folder = run.data.tags.get(RUN_DIR_TAG)
        local = Path(folder) / "recipe.toml" if folder else None
        if local is not None and local.is_file():
            return local.read_text(encoding="utf-8"), str(local)
    raise UsageError(f"MLflow run {rid} has no recipe.toml artifact and no run folder with one "
                     f"({run.data.tags.get(RUN_DIR_TAG, 'no folder tag')}), so it cannot be "
                     "re-run; was it recorded by `automl-bin run`?")
