"""The MLflow tracker plugin against a real sqlite store, and ``automl-bin ui`` serving it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

# Before mlflow is imported anywhere in this process: no telemetry lookups, no INFO chatter.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from automl_bin.interfaces import Estimate, Genotype  # noqa: E402
from automl_bin.recipe import flatten, parse_recipe  # noqa: E402
from automl_bin.run_info import RunInfo  # noqa: E402
from automl_bin_plugins.tracking import mlflow_tracker as tracker  # noqa: E402

# MLflow's sqlalchemy store triggers this at mapper set-up; it is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")

EXPERIMENT = "tracker-test"
GENOTYPE = Genotype(space="darts", cells={"normal": {"edges": [["sep_conv_3x3", 0, 2]], "concat": [2]}})
TAGS = {"strategy": "darts", "search_space": "darts", "binarizer": "none", "dataset": "synthetic",
        "automl_bin.version": "0.1.0"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sqlite store folder for the module: creating a database costs ~2 s of migrations."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture(autouse=True)
def _in_store(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow puts a new experiment's artifacts under <cwd>/mlruns: keep them out of the repo
    monkeypatch.chdir(store)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def store_uri(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


def make_run(tmp_path: Path, *, uri: str, experiment: str = EXPERIMENT,
             enabled: bool = True, on_error: str = "stop") -> RunInfo:
    """A RunInfo as the runner builds it, with its run folder in ``tmp_path``."""
    text = (
        f'[experiment]\nname = "{experiment}"\n\n'
        '[strategy]\nname = "darts"\nepochs = 3\n\n'
        '[data]\nname = "synthetic"\n\n'
        f'[tracking]\nenabled = {"true" if enabled else "false"}\nuri = "{uri}"\n'
        f'on_error = "{on_error}"\n'
    )
    recipe = parse_recipe(text)
    return RunInfo(recipe=recipe, recipe_text=text, run_dir=tmp_path / "run",
                   params=flatten(recipe.raw), tags=dict(TAGS))


def client_for(folder: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store_uri(folder))


def run_lifecycle(run: RunInfo, tmp_path: Path) -> None:
    """Every hook, in the order the runner calls them, for a 2-epoch search and retrain."""
    extra = tmp_path / "notes.txt"
    extra.write_text("hello", encoding="utf-8")
    tracker.on_run_start(run=run)
    tracker.on_phase_start(run=run, phase="search")
    for epoch in range(2):
        tracker.on_epoch_end(run=run, phase="search", epoch=epoch,
                             metrics={"train_loss": 2.0 - epoch, "val_acc": 0.3 + 0.1 * epoch,
                                      "note": "not a number"})
    tracker.on_metrics(run=run, phase="search", metrics={"alpha_entropy": 1.5}, step=7)
    tracker.on_artifact(run=run, phase="search", path=extra, artifact_path="extra")
    tracker.on_search_end(run=run, genotype=GENOTYPE, metrics={"search_seconds": 12.5})
    tracker.on_phase_end(run=run, phase="search", status="FINISHED")
    tracker.on_phase_start(run=run, phase="retrain")
    for epoch in range(2):
        tracker.on_epoch_end(run=run, phase="retrain", epoch=epoch, metrics={"train_acc": 0.5 + epoch / 10})
    metrics = {"test_acc": 0.81, "params": 1234.0, "flops": 5.0e6, "retrain_seconds": 3.25}
    tracker.on_retrain_end(run=run, estimate=Estimate(genotype=GENOTYPE, score=0.81, metrics=metrics))
    tracker.on_phase_end(run=run, phase="retrain", status="FINISHED")
    tracker.on_artifact(run=run, phase="run", path=extra, artifact_path=None)
    tracker.on_run_end(run=run, status="FINISHED",
                       summary={"search_seconds": 12.5, "test_acc": 0.81, "params": 1234.0,
                                "flops": 5.0e6, "retrain_seconds": 3.25, "total_seconds": 16.0})


def test_resolve_tracking_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracker.resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////x/y.db")
    assert tracker.resolve_tracking_uri(None) == "sqlite:////x/y.db"
    assert tracker.resolve_tracking_uri("sqlite:////a.db") == "sqlite:////a.db"


def test_module_import_is_light() -> None:
    code = ("import sys, automl_bin_plugins.tracking.mlflow_tracker as m; "
            "print(sorted(n for n in ('mlflow', 'torch') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"


def test_full_lifecycle_is_recorded(tmp_path: Path, store: Path) -> None:
    run = make_run(tmp_path, uri=store_uri(store))
    run_lifecycle(run, tmp_path)
    client = client_for(store)

    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert run.announcements == {"mlflow_run_id": parent.info.run_id,
                                 "mlflow_experiment_id": experiment.experiment_id,
                                 "mlflow_tracking_uri": store_uri(store)}

    # parent: name, tags, params, summary metrics, genotype, artifacts
    assert parent.info.run_name == "darts-run"
    assert parent.info.status == "FINISHED"
    for key, value in TAGS.items():
        assert parent.data.tags[key] == value
    assert parent.data.tags["automl_bin.run_dir"] == str((tmp_path / "run").resolve())
    assert parent.data.tags["genotype"] == str(GENOTYPE)
    assert "error" not in parent.data.tags
    assert parent.data.params == dict(run.params)
    assert parent.data.params["strategy.epochs"] == "3"
    assert parent.data.metrics == {"search_seconds": 12.5, "test_acc": 0.81, "params": 1234.0,
                                   "flops": 5.0e6, "retrain_seconds": 3.25, "total_seconds": 16.0}
    # test_acc came from on_retrain_end and again in the summary: logged once
    assert len(client.get_metric_history(parent.info.run_id, "test_acc")) == 1
    assert sorted(a.path for a in client.list_artifacts(parent.info.run_id)) == ["notes.txt", "recipe.toml"]
    assert (tmp_path / "run" / "recipe.toml").read_text() == run.recipe_text

    # children: nested, named after their phase, with per-epoch histories
    children = {r.data.tags["phase"]: r for r in runs if r.info.run_id != parent.info.run_id}
    assert set(children) == {"search", "retrain"}
    for phase, child in children.items():
        assert child.info.run_name == phase
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["strategy"] == "darts"
        assert child.info.status == "FINISHED"
    search, retrain = children["search"].info.run_id, children["retrain"].info.run_id
    history = client.get_metric_history(search, "train_loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.0)]
    assert [m.step for m in client.get_metric_history(search, "alpha_entropy")] == [7]
    assert "note" not in children["search"].data.metrics
    assert children["search"].data.metrics["search_seconds"] == 12.5
    assert [a.path for a in client.list_artifacts(search, "extra")] == ["extra/notes.txt"]
    assert [m.step for m in client.get_metric_history(retrain, "train_acc")] == [0, 1]
    assert children["retrain"].data.metrics["test_acc"] == 0.81


def test_killed_run_terminates_parent_and_open_child(tmp_path: Path, store: Path) -> None:
    run = make_run(tmp_path, uri=store_uri(store), experiment="killed")
    tracker.on_run_start(run=run)
    tracker.on_phase_start(run=run, phase="search")
    tracker.on_epoch_end(run=run, phase="search", epoch=0, metrics={"train_loss": 1.0})
    tracker.on_run_end(run=run, status="KILLED", summary={"error": "KeyboardInterrupt: x" * 2000})

    client = client_for(store)
    runs = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    assert sorted(r.info.status for r in runs) == ["KILLED", "KILLED"]
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.tags["error"].startswith("KeyboardInterrupt: x")
    assert len(parent.data.tags["error"]) <= 5000
    assert parent.info.end_time is not None
    # a second on_run_end (or late hooks) change nothing
    tracker.on_run_end(run=run, status="FINISHED", summary={})
    tracker.on_epoch_end(run=run, phase="search", epoch=1, metrics={"train_loss": 0.5})
    assert client.get_run(parent.info.run_id).info.status == "KILLED"


def test_disabled_tracking_creates_nothing(tmp_path: Path) -> None:
    run = make_run(tmp_path, uri=store_uri(tmp_path), enabled=False)
    run_lifecycle(run, tmp_path)
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "run").exists()
    assert run.announcements == {}
    assert run.observer_state == {}


def test_unusable_store_stops_the_run_with_the_reason(tmp_path: Path) -> None:
    """Default on_error = "stop": a local store that cannot be opened stops the run (exit 1 with
    the reason) instead of letting it finish untracked."""
    from automl_bin.errors import StopRun

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")  # the store's folder is a file: sqlite cannot create the database
    run = make_run(tmp_path, uri=f"sqlite:///{blocker}/mlflow.db")
    with pytest.raises(StopRun, match=r"MLflow tracking failed in on_run_start \(store sqlite"):
        tracker.on_run_start(run=run)
    # the hooks the runner fires while stopping neither raise again nor warn
    tracker.on_phase_end(run=run, phase="search", status="FAILED")
    tracker.on_run_end(run=run, status="FAILED", summary={"error": "stopped"})
    assert run.announcements == {}


def test_unusable_store_with_continue_warns_once_and_the_run_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")  # the store's folder is a file: sqlite cannot create the database
    run = make_run(tmp_path, uri=f"sqlite:///{blocker}/mlflow.db", on_error="continue")
    with pytest.warns(RuntimeWarning, match="MLflow tracking failed in on_run_start") as caught:
        run_lifecycle(run, tmp_path)
    assert len([w for w in caught if "MLflow tracking failed" in str(w.message)]) == 1
    assert run.announcements == {}


def test_unreachable_server_stops_the_run_fast(tmp_path: Path) -> None:
    """Default on_error = "stop": a tracking server that does not answer stops the run at once
    (the runner keeps the checkpoint; see tests/test_resume.py), never minutes of retries."""
    from automl_bin.errors import StopRun

    port = free_port()  # nothing listens there: refused at once, without MLflow's retries
    run = make_run(tmp_path, uri=f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(StopRun, match="unreachable"):
        run_lifecycle(run, tmp_path)
    assert time.monotonic() - start < 10
    assert run.announcements == {}


def test_unreachable_server_with_continue_warns_and_goes_on(tmp_path: Path) -> None:
    port = free_port()
    run = make_run(tmp_path, uri=f"http://127.0.0.1:{port}", on_error="continue")
    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="unreachable"):
        run_lifecycle(run, tmp_path)
    assert time.monotonic() - start < 10
    assert run.announcements == {}


# --------------------------------------------------------------------------------------------
# automl-bin ui
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ui_without_store_is_a_usage_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from automl_bin.cli.ui import ui_command

    result = CliRunner().invoke(ui_command, ["--uri", f"sqlite:///{tmp_path}/missing.db"])
    assert result.exit_code == 2
    assert "No tracking store found" in result.output
    assert "automl-bin run" in result.output


def test_ui_help_has_examples() -> None:
    from click.testing import CliRunner

    from automl_bin.cli.ui import ui_command

    result = CliRunner().invoke(ui_command, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--port" in result.output


def _get_json(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_ui_serves_the_store(tmp_path: Path, store: Path) -> None:
    run = make_run(tmp_path, uri=store_uri(store), experiment="served")
    run_lifecycle(run, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    code = ("import sys; from automl_bin.cli.ui import ui_command; "
            "ui_command(sys.argv[1:], prog_name='automl-bin ui')")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--uri", store_uri(store), "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, "the MLflow server did not answer in 60 s"
                time.sleep(0.25)

        found = _get_json(f"{base}/api/2.0/mlflow/experiments/search", {"max_results": 100})
        assert "served" in [e["name"] for e in found["experiments"]]
        # the client-logged artifacts (a local folder, not proxied) are served
        listed = _get_json(f"{base}/ajax-api/2.0/mlflow/artifacts/list?"
                           f"run_id={run.announcements['mlflow_run_id']}")
        assert {f["path"] for f in listed["files"]} == {"notes.txt", "recipe.toml"}
        # an experiment made in the UI gets a plain local artifact root next to the database
        created = _get_json(f"{base}/api/2.0/mlflow/experiments/create", {"name": "from-ui"})
        made = _get_json(f"{base}/api/2.0/mlflow/experiments/get?experiment_id={created['experiment_id']}")
        assert made["experiment"]["artifact_location"] == str(store.resolve() / "mlruns" / created["experiment_id"])
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            out, _ = proc.communicate(timeout=90)  # a loaded machine stops uvicorn slowly
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, out
    assert f"{base}/#/experiments" in out
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(f"{base}/health", timeout=2)
