"""MLflow tracker: records every ``automl-bin run`` as an MLflow parent run with nested phase runs.

Layout in MLflow (experiment = the recipe's ``[experiment] name``)::

    <strategy>-<run folder>            parent: params (every resolved setting), tags, recipe.toml,
                                       summary metrics, genotype
      search                           child: per-epoch search metrics (step = epoch)
      retrain                          child: per-epoch retrain metrics, test metrics

A suite (``[[suite]]``, ``[sweep]``, ``[experiment] seeds``) adds one level above::

    suite-<suite folder>               suite run: the suite's recipe, comparison table and plots
      <label> [key=value] s<seed>      one member run each, laid out as above

The store is ``[tracking] uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``
(spelled out, so ``automl-bin ui`` finds the same file); that resolution, the tag names and the
key spelling are the core's `automl_bin.tracking.names`, shared with the commands that read the
runs back. Everything is a no-op when ``[tracking] enabled = false``.

The plugin talks to MLflow through ``MlflowClient`` only (no fluent ``mlflow.start_run``), keeps
its ids in ``run.state_for("mlflow")`` and imports mlflow lazily, so loading the plugin costs
nothing for commands that never run. A run must never end untracked without saying so: an
MLflow error (after the retries of `automl_bin.tracking.sqlite_guard` on a busy sqlite store)
stops the run with the reason under ``[tracking] on_error = "stop"`` (the default; the checkpoint
is kept for ``--resume``), or is reported with one warning per run under ``"continue"``.
"""

from __future__ import annotations

import contextlib
import numbers
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_bin import hookimpl
from automl_bin.compare import genotype_id
from automl_bin.errors import StopRun
from automl_bin.tracking.names import (
    ERROR_TAG,
    GENOTYPE_ID_TAG,
    GENOTYPE_TAG,
    INCOMPLETE_TAG,
    PARENT_SEARCH_METRICS,
    PARENT_TAG,
    PHASE_TAG,
    RESUMED_TAG,
    ROLE_RUN,
    ROLE_SUITE,
    ROLE_TAG,
    RUN_DIR_TAG,
    resolve_tracking_uri,
    tracking_key,
)
from automl_bin.tracking.store import make_client

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from automl_bin.interfaces import Estimate, Genotype
    from automl_bin.run_info import RunInfo, SuiteInfo

__all__ = ["resolve_tracking_uri", "STATE_KEY"]

#: the key of this plugin's private dict in `RunInfo.state_for`
STATE_KEY = "mlflow"
#: the phase name hooks use for the parent run
RUN_PHASE = "run"

# MLflow's own limits (mlflow.utils.validation): params <= 6000 chars, tags <= 8000 chars,
# 100 params and 1000 metrics per log_batch call.
_MAX_PARAM_LEN = 6000
_MAX_TAG_LEN = 5000
_MAX_ERROR_LEN = 5000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
#: seconds to wait for a remote tracking server before giving up on tracking this run; MLflow's
#: own HTTP retries take ~4 minutes to fail on a refused connection
_PROBE_TIMEOUT_S = 3.0


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _is_remote(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


def _probe(uri: str) -> str | None:
    """None when ``uri`` is local or its server answers within a few seconds, else the problem."""
    if not _is_remote(uri):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=_PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None  # it answered (maybe behind auth or a proxy): reachable
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"MLflow server {uri} is unreachable ({reason})"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of ``metrics`` as floats (nan and inf kept); anything else dropped."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, numbers.Real):
            out[tracking_key(name)] = float(value)
        elif hasattr(value, "item"):  # numpy / 0-d torch scalars without importing either
            try:
                out[tracking_key(name)] = float(value.item())
            except (TypeError, ValueError, RuntimeError):
                continue
    return out


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    """Log ``metrics`` at ``step`` in as few ``log_batch`` calls as MLflow allows (one, usually)."""
    from mlflow.entities import Metric

    stamp = _now_ms()
    entities = [Metric(k, v, stamp, int(step)) for k, v in metrics.items()]
    for chunk in _chunks(entities, _METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=chunk)


def _state(run: RunInfo) -> dict[str, Any] | None:
    """This plugin's state when the run is tracked and its parent run is open, else None."""
    if not run.recipe.tracking.enabled:
        return None
    state = run.state_for(STATE_KEY)
    if state.get("parent") is None or state.get("suspended") or state.get("ended"):
        return None
    return state


def _fail(run: RunInfo, state: dict[str, Any], hook: str, exc: BaseException) -> None:
    """Record an MLflow failure. With ``[tracking] on_error = "stop"`` (the default) the first
    one stops the run (`StopRun`: exit 1 with the reason, checkpoint kept), so no run ends
    successfully untracked; with ``"continue"`` warn once per run. Remote stores are given up
    for the run."""
    uri = state.get("uri", "?")
    state["failures"] = state.get("failures", 0) + 1
    # A dead server makes every call block through MLflow's retries (minutes), so stop calling
    # it; a local store has already been retried (sqlite_guard) and may still recover, so keep
    # trying (and close the runs at the end).
    suspend = _is_remote(uri) or state.get("parent") is None
    if suspend:
        state["suspended"] = True
    detail = _truncate(f"{type(exc).__name__}: {exc}", 600)
    if run.recipe.tracking.on_error == "stop" and not state.get("stopped"):
        # once: the hooks the runner fires while stopping must not replace this error
        state.update(stopped=True, suspended=True)
        raise StopRun(f"MLflow tracking failed in {hook} (store {uri}): {detail}.")
    if state.get("warned"):
        return
    state["warned"] = True
    then = (
        "tracking of this run is off from here on"
        if suspend
        else "later tracking calls are still attempted"
    )
    warnings.warn(
        f"MLflow tracking failed in {hook} for run {run.run_dir.name!r} (store {uri}): {detail}. "
        f"The run continues; {then}.",
        RuntimeWarning,
        stacklevel=3,
    )


def _run_id_for(state: dict[str, Any], phase: str) -> str:
    """The MLflow run of ``phase``: its child run, the parent for "run" or an unknown phase."""
    if phase == RUN_PHASE:
        return state["parent"]
    return state["children"].get(phase, state["parent"])


def _log_on_parent_once(state: dict[str, Any], metrics: Mapping[str, float]) -> None:
    """Log summary metrics on the parent at step 0, skipping values it already has (no doubles
    in the history when on_retrain_end and on_run_end both report test_acc)."""
    seen: dict[str, float] = state.setdefault("parent_summary", {})
    fresh = {k: v for k, v in metrics.items() if seen.get(k) != v}
    if fresh:
        _log_metrics(state["client"], state["parent"], fresh, step=0)
        seen.update(fresh)


def _experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except MlflowException:
            # another process created it between our lookup and create
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise RuntimeError(
            f"experiment {name!r} (id {experiment.experiment_id}) is deleted in {uri}; restore it "
            f"with `mlflow experiments restore --experiment-id {experiment.experiment_id}` or "
            "choose another [experiment] name"
        )
    return experiment.experiment_id


def _close(state: dict[str, Any], status: str) -> None:
    """Terminate the open child runs, then the parent, with ``status``."""
    client = state["client"]
    end = _now_ms()
    for child in list(state["open"]):
        client.set_terminated(child, status=status, end_time=end)
        state["open"].discard(child)
    client.set_terminated(state["parent"], status=status, end_time=end)


# --------------------------------------------------------------------------------------------
# lifecycle hooks
# --------------------------------------------------------------------------------------------


@hookimpl
def on_run_start(run: RunInfo) -> None:
    """Create (or reuse) the experiment and open the parent run with params, tags and recipe."""
    if not run.recipe.tracking.enabled:
        return
    state = run.state_for(STATE_KEY)
    uri = resolve_tracking_uri(run.recipe.tracking.uri)
    state.update(uri=uri, parent=None, children={}, open=set())
    try:
        problem = _probe(uri)
        if problem is not None:
            raise ConnectionError(problem)
        client = make_client(uri)
        experiment_id = _experiment_id(client, run.recipe.experiment.name, uri)
        if _reopen(run, state, client, experiment_id, uri):
            return
        tags = {str(k): _truncate(str(v), _MAX_TAG_LEN) for k, v in run.tags.items()}
        tags[RUN_DIR_TAG] = str(Path(run.run_dir).resolve())
        tags[ROLE_TAG] = ROLE_RUN
        suite_run = run.suite.state_for(STATE_KEY).get("parent") if run.suite else None
        if suite_run:
            tags[PARENT_TAG] = suite_run
        strategy = run.tags.get("strategy", run.recipe.strategy.name)
        parent = client.create_run(
            experiment_id,
            start_time=_now_ms(),
            tags=tags,
            run_name=run.tags.get("suite.run_name") or f"{strategy}-{Path(run.run_dir).name}",
        )
        state.update(client=client, experiment_id=experiment_id, parent=parent.info.run_id)
        # announce as soon as the run exists, so the user can find it even if logging fails
        run.announce("mlflow_run_id", parent.info.run_id)
        run.announce("mlflow_experiment_id", experiment_id)
        run.announce("mlflow_tracking_uri", uri)

        from mlflow.entities import Param

        params = [
            Param(tracking_key(k), _truncate(str(v), _MAX_PARAM_LEN))
            for k, v in sorted(run.tracked_params.items())
        ]
        for chunk in _chunks(params, _PARAMS_PER_BATCH):
            client.log_batch(parent.info.run_id, params=chunk)

        recipe_file = Path(run.run_dir) / "recipe.toml"
        if not recipe_file.exists():
            recipe_file.parent.mkdir(parents=True, exist_ok=True)
            recipe_file.write_text(run.recipe_text, encoding="utf-8")
        client.log_artifact(parent.info.run_id, str(recipe_file))
    except Exception as exc:
        if state.get("parent") is not None and run.recipe.tracking.on_error == "stop":
            # the runner stops before its own end: do not leave the new run RUNNING
            with contextlib.suppress(Exception):
                state["client"].set_terminated(state["parent"], status="FAILED",
                                               end_time=_now_ms())
        _fail(run, state, "on_run_start", exc)


def _reopen(run: RunInfo, state: dict[str, Any], client: MlflowClient, experiment_id: str,
            uri: str) -> bool:
    """Continue the tracked run of an interrupted run (``run.resume``): mark it and its phase
    runs RUNNING again. False when there is none to continue (then a new run is created)."""
    run_id = (run.resume or {}).get("mlflow_run_id")
    if not run_id or (run.resume or {}).get("mlflow_tracking_uri", uri) != uri:
        return False
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    children = client.search_runs([experiment_id],
                                  filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'")
    state.update(client=client, experiment_id=experiment_id, parent=run_id,
                 children={c.data.tags.get(PHASE_TAG, c.info.run_name): c.info.run_id
                           for c in children if PHASE_TAG in c.data.tags})
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, RESUMED_TAG, "true")
    run.announce("mlflow_run_id", run_id)
    run.announce("mlflow_experiment_id", experiment_id)
    run.announce("mlflow_tracking_uri", uri)
    return True


@hookimpl
def on_phase_start(run: RunInfo, phase: str) -> None:
    """Open a nested child run named ``phase`` (reopen it when resuming)."""
    state = _state(run)
    if state is None:
        return
    existing = state["children"].get(phase)
    if existing is not None:
        try:
            state["client"].update_run(existing, status="RUNNING")
            state["open"].add(existing)
        except Exception as exc:
            _fail(run, state, "on_phase_start", exc)
        return
    try:
        tags = {str(k): _truncate(str(v), _MAX_TAG_LEN) for k, v in run.tags.items()}
        tags.update({PARENT_TAG: state["parent"], PHASE_TAG: phase})
        child = state["client"].create_run(
            state["experiment_id"], start_time=_now_ms(), tags=tags, run_name=phase
        )
        state["children"][phase] = child.info.run_id
        state["open"].add(child.info.run_id)
    except Exception as exc:
        _fail(run, state, "on_phase_start", exc)


@hookimpl
def on_epoch_end(run: RunInfo, phase: str, epoch: int, metrics: Mapping[str, float]) -> None:
    """Log the epoch's metrics on the phase's run at ``step = epoch``, in one batch."""
    state = _state(run)
    if state is None:
        return
    try:
        values = _numeric(metrics)
        if values:
            _log_metrics(state["client"], _run_id_for(state, phase), values, step=epoch)
    except Exception as exc:
        _fail(run, state, "on_epoch_end", exc)


@hookimpl
def on_metrics(run: RunInfo, phase: str, metrics: Mapping[str, float], step: int) -> None:
    """Log extra metrics on the phase's run ("run" = the parent)."""
    state = _state(run)
    if state is None:
        return
    try:
        values = _numeric(metrics)
        if values:
            _log_metrics(state["client"], _run_id_for(state, phase), values, step=step)
    except Exception as exc:
        _fail(run, state, "on_metrics", exc)


@hookimpl
def on_artifact(run: RunInfo, phase: str, path: Path, artifact_path: str | None) -> None:
    """Copy a file (or a folder) into the artifacts of the phase's run ("run" = the parent)."""
    state = _state(run)
    if state is None:
        return
    path = Path(path)
    if not path.exists():
        # a caller's mistake, not an MLflow failure: say so without giving up tracking
        warnings.warn(f"MLflow tracker: artifact {str(path)!r} does not exist; not logged.",
                      RuntimeWarning, stacklevel=2)
        return
    try:
        client, run_id = state["client"], _run_id_for(state, phase)
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path)
        else:
            client.log_artifact(run_id, str(path), artifact_path)
    except Exception as exc:
        _fail(run, state, "on_artifact", exc)


@hookimpl
def on_search_end(run: RunInfo, genotype: Genotype, metrics: Mapping[str, float]) -> None:
    """Log search metrics on the search run, ``search_seconds`` and the genotype on the parent."""
    state = _state(run)
    if state is None:
        return
    try:
        values = _numeric(metrics)
        target = _run_id_for(state, "search")
        if values:
            _log_metrics(state["client"], target, values, step=0)
        on_parent = {k: values[k] for k in PARENT_SEARCH_METRICS if k in values}
        if on_parent and target != state["parent"]:
            _log_on_parent_once(state, on_parent)
        text = str(genotype)
        state["client"].set_tag(state["parent"], GENOTYPE_TAG, _truncate(text, _MAX_TAG_LEN))
        # the id of the whole text: compare's genotypes column must not depend on the cut
        state["client"].set_tag(state["parent"], GENOTYPE_ID_TAG, genotype_id(text))
    except Exception as exc:
        _fail(run, state, "on_search_end", exc)


@hookimpl
def on_retrain_end(run: RunInfo, estimate: Estimate) -> None:
    """Log the final metrics (test_acc, params, flops, ...) on the retrain run and the parent."""
    state = _state(run)
    if state is None:
        return
    try:
        values = _numeric(estimate.metrics)
        if values:
            _log_metrics(state["client"], _run_id_for(state, "retrain"), values, step=0)
            _log_on_parent_once(state, values)
    except Exception as exc:
        _fail(run, state, "on_retrain_end", exc)


@hookimpl
def on_phase_end(run: RunInfo, phase: str, status: str) -> None:
    """Terminate the phase's child run with ``status``."""
    state = _state(run)
    if state is None:
        return
    child = state["children"].get(phase)
    if child is None or child not in state["open"]:
        return
    try:
        state["client"].set_terminated(child, status=status, end_time=_now_ms())
        state["open"].discard(child)
    except Exception as exc:
        _fail(run, state, "on_phase_end", exc)


@hookimpl
def on_run_end(run: RunInfo, status: str, summary: Mapping[str, Any]) -> None:
    """Log the summary on the parent, then terminate open children and the parent with ``status``."""
    if not run.recipe.tracking.enabled:
        return
    state = run.state_for(STATE_KEY)
    if state.get("parent") is None or state.get("ended"):
        return
    state["ended"] = True
    client = state["client"]
    failed: BaseException | None = None
    if not state.get("suspended"):
        try:
            _log_on_parent_once(state, _numeric({k: v for k, v in summary.items() if k != "error"}))
            if summary.get("error"):
                client.set_tag(state["parent"], ERROR_TAG, _truncate(str(summary["error"]), _MAX_ERROR_LEN))
        except Exception as exc:
            failed = exc
            state["failures"] = state.get("failures", 0) + 1
    # Close the runs even after a failure, so they do not stay RUNNING in the UI; for a remote
    # store only when it answers quickly (no minutes of retries at exit).
    if not (state.get("suspended") and _probe(state["uri"]) is not None):
        try:
            if state.get("failures"):
                client.set_tag(state["parent"], INCOMPLETE_TAG, "true")
            _close(state, status)
        except Exception as exc:
            failed = failed or exc
    if failed is not None:
        _fail(run, state, "on_run_end", failed)  # may stop: the run then exits non-zero


# --------------------------------------------------------------------------------------------
# suite hooks
# --------------------------------------------------------------------------------------------


@hookimpl
def on_suite_start(suite: SuiteInfo) -> None:
    """Open the suite's run (reopen it when the suite is resumed); member runs nest under it
    (see `on_run_start`)."""
    if not suite.recipe.tracking.enabled:
        return
    state = suite.state_for(STATE_KEY)
    uri = resolve_tracking_uri(suite.recipe.tracking.uri)
    state["uri"] = uri
    try:
        problem = _probe(uri)
        if problem is not None:
            raise ConnectionError(problem)
        client = make_client(uri)
        experiment_id = _experiment_id(client, suite.name, uri)
        if _reopen_suite(suite, state, client, experiment_id, uri):
            return
        tags = {str(k): _truncate(str(v), _MAX_TAG_LEN) for k, v in suite.tags.items()}
        tags.update({ROLE_TAG: ROLE_SUITE, RUN_DIR_TAG: str(Path(suite.run_dir).resolve())})
        parent = client.create_run(experiment_id, start_time=_now_ms(), tags=tags,
                                   run_name=f"suite-{Path(suite.run_dir).name}")
        state.update(client=client, parent=parent.info.run_id)
        suite.announce("mlflow_suite_run_id", parent.info.run_id)
        suite.announce("mlflow_experiment_id", experiment_id)
        suite.announce("mlflow_tracking_uri", uri)
        from mlflow.entities import Param

        params = [Param("suite.runs", str(len(suite.members))),
                  Param("suite.sweep_keys", ",".join(suite.sweep_keys) or "-")]
        client.log_batch(parent.info.run_id, params=params)
        recipe_file = Path(suite.run_dir) / "recipe.toml"
        if recipe_file.exists():
            client.log_artifact(parent.info.run_id, str(recipe_file))
    except Exception as exc:
        state["parent"] = None
        warnings.warn(f"MLflow tracking of suite {suite.name!r} failed (store {uri}): "
                      f"{_truncate(f'{type(exc).__name__}: {exc}', 600)}. Its member runs are "
                      "tracked on their own.", RuntimeWarning, stacklevel=2)


def _reopen_suite(suite: SuiteInfo, state: dict[str, Any], client: MlflowClient,
                  experiment_id: str, uri: str) -> bool:
    """Continue the suite run of an interrupted suite; False when there is none to continue."""
    resume = suite.resume or {}
    run_id = resume.get("mlflow_suite_run_id")
    if not run_id or resume.get("mlflow_tracking_uri", uri) != uri:
        return False
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, RESUMED_TAG, "true")
    state.update(client=client, parent=run_id)
    suite.announce("mlflow_suite_run_id", run_id)
    suite.announce("mlflow_experiment_id", experiment_id)
    suite.announce("mlflow_tracking_uri", uri)
    return True


@hookimpl
def on_suite_end(suite: SuiteInfo, status: str, summary: Mapping[str, Any]) -> None:
    """Attach the comparison files and counts to the suite's run and close it."""
    state = suite.state_for(STATE_KEY)
    if not state.get("parent"):
        return
    client, run_id = state["client"], state["parent"]
    try:
        counts = _numeric({k: summary[k] for k in ("runs", "finished", "failed") if k in summary})
        if counts:
            _log_metrics(client, run_id, counts, step=0)
        for path in suite.artifacts:
            if Path(path).is_file():
                client.log_artifact(run_id, str(path))
    finally:
        client.set_terminated(run_id, status=status, end_time=_now_ms())
