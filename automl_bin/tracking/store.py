"""Reading the MLflow store from commands (``compare``, ``run --from-run``/``--resume``,
``summary``, ``export``).

MLflow is imported lazily; a store that does not exist is an error with the fix (MlflowClient
would silently create an empty one), never a new file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from automl_bin.errors import UsageError
from automl_bin.tracking.names import (
    PARENT_TAG,
    PHASE_TAG,
    RUN_DIR_TAG,
    missing_sqlite_store,
    resolve_tracking_uri,
    sqlite_path,
)
from automl_bin.tracking.sqlite_guard import (
    OPEN_DELAYS_S,
    RetryingClient,
    quiet_transient_errors,
    store_lock,
    with_retries,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["make_client", "open_client", "parent_run", "recipe_of_run", "run_folder_of",
           "uri_option_help"]

uri_option_help = ("MLflow store to read. Default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///<current folder>/mlflow.db.")


def make_client(uri: str) -> MlflowClient:
    """An ``MlflowClient`` of ``uri`` (created as is: check the store exists first).

    For a sqlite store, opening it (which creates and migrates the database the first time)
    holds a lock beside the file, so processes started together do not race through MLflow's
    migrations, and each call of the client is retried while another process has the database
    locked (`automl_bin.tracking.sqlite_guard`).
    """
    # set before the first import of mlflow: no telemetry DNS lookup, no INFO chatter
    # (e.g. "Creating initial MLflow database tables...")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    from mlflow.tracking import MlflowClient

    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(tracking_uri=uri)  # servers retry and migrate on their own
    quiet_transient_errors()
    with store_lock(db):
        client = with_retries(lambda: MlflowClient(tracking_uri=uri), opening=True,
                              delays=OPEN_DELAYS_S)
    # the proxy has every method of the client it wraps
    return cast("MlflowClient", RetryingClient(client))


def open_client(uri: str | None) -> tuple[MlflowClient, str]:
    """An ``MlflowClient`` of ``uri`` (default: `resolve_tracking_uri`), refusing missing sqlite
    files."""
    uri = resolve_tracking_uri(uri)
    where = missing_sqlite_store(uri)
    if where is not None:
        raise UsageError(f"There is no MLflow store at {where}. Run the command in the folder "
                         "where you ran `automl-bin run` (it writes ./mlflow.db), or pass the "
                         "store with --uri sqlite:////path/to/mlflow.db.")
    return make_client(uri), uri


def parent_run(client: MlflowClient, run_id: str, uri: str) -> Any:
    """The automl-bin run ``run_id`` names: itself, or the parent of a search/retrain run."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
        tags = run.data.tags
        if PHASE_TAG in tags and PARENT_TAG in tags:
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


def run_folder_of(run_id: str, uri: str | None) -> Path:
    """The run folder of MLflow run ``run_id`` (a parent run or one of its phase runs), for
    commands whose TARGET is a run folder, a recipe or a run id (``summary``, ``export``)."""
    uri = resolve_tracking_uri(uri)
    where = missing_sqlite_store(uri)
    if where is not None:
        raise UsageError(
            f"{run_id!r} is not a file or folder, and there is no MLflow store at {where} to look "
            "it up as a run id. Pass a run folder, a recipe .toml, or the store with --uri "
            "sqlite:////path/to/mlflow.db."
        )
    client = make_client(uri)  # first: it sets mlflow's environment before mlflow is imported
    from mlflow.exceptions import MlflowException

    try:
        tags = dict(client.get_run(run_id).data.tags)
        if RUN_DIR_TAG not in tags and PARENT_TAG in tags:  # a "search"/"retrain" child run
            tags = dict(client.get_run(tags[PARENT_TAG]).data.tags)
    except MlflowException as exc:
        detail = " ".join(str(getattr(exc, "message", exc)).split())[:300]
        raise UsageError(
            f"{run_id!r} is not a file or folder, and not a run in the MLflow store {uri} "
            f"({detail}). Pass a run id shown by `automl-bin ui`, a run folder or a recipe."
        ) from exc
    folder = tags.get(RUN_DIR_TAG)
    if not folder:
        raise UsageError(
            f"MLflow run {run_id!r} has no {RUN_DIR_TAG} tag, so it was not recorded by "
            "`automl-bin run`; pass its run folder or a recipe instead."
        )
    return Path(folder)
