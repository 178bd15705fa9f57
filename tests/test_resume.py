"""Checkpoint and resume: a search stopped by SIGTERM continues in the same folder and MLflow
run and ends with the genotype and metrics of an uninterrupted run; seeded runs repeat."""

from __future__ import annotations

import json
import os
import signal
import types

import pytest
from click.testing import CliRunner

from automl_bin import hookimpl
from automl_bin.cli.main import cli
from automl_bin.errors import UsageError
from automl_bin.progress import Progress
from automl_bin.recipe import parse_recipe, resolve
from automl_bin.resume import find_resume_point, load_checkpoint
from automl_bin.runner import RunInterrupted, run
from automl_bin.testing import make_plugins, tiny_recipe_text

EPOCHS = 3


def _recipe(tmp_path, name="resume"):
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    text = tiny_recipe_text("darts", name=name, retrain=False,
                            strategy_params={"epochs": EPOCHS, "max_steps": 2})
    return parse_recipe(text, [f"tracking.uri={json.dumps(uri)}",
                               f"experiment.output_dir={json.dumps(str(tmp_path / 'runs'))}"]), uri


def _sigterm_after_first_epoch():
    module = types.ModuleType("sigterm_after_first_epoch")

    @hookimpl
    def on_epoch_end(run, phase, epoch):
        if phase == "search" and epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # what `kill PID` or a scheduler does

    module.on_epoch_end = on_epoch_end
    return module


def _search_run(client, result):
    """The one MLflow search run nested under ``result``'s parent run."""
    parent = client.get_run(result.announcements["mlflow_run_id"])
    (child,) = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' "
                      "and tags.phase = 'search'")
    return child


def _history(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key),
                                              key=lambda m: m.step)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    plugins = make_plugins()
    recipe, uri = _recipe(tmp)
    straight = run(resolve(recipe, plugins.registry), plugins, Progress(enabled=False))

    killer = make_plugins(("killer", _sigterm_after_first_epoch()))
    with pytest.raises(RunInterrupted) as info:
        run(resolve(recipe, killer.registry), killer, Progress(enabled=False))
    folder = max((tmp / "runs" / "resume").iterdir())
    assert "automl-bin run --resume" in str(info.value)
    killed_status = json.loads((folder / "summary.json").read_text())["status"]

    point = find_resume_point(folder)
    resumed_recipe = parse_recipe(point.recipe_text)
    resumed = run(resolve(resumed_recipe, plugins.registry), plugins, Progress(enabled=False),
                  resume=point)
    return straight, resumed, folder, killed_status, point, uri


def test_killed_run_is_marked_and_checkpointed(runs):
    _, _, folder, killed_status, point, _ = runs
    assert killed_status == "KILLED"
    assert point.next_epoch == 1 and point.checkpoint["epoch"] == 0
    assert point.announcements["mlflow_run_id"]


def test_resumed_search_matches_the_uninterrupted_one(runs):
    from mlflow.tracking import MlflowClient

    straight, resumed, folder, _, point, uri = runs
    assert resumed.run_dir == folder  # the same folder, nothing new
    assert resumed.genotype == straight.genotype
    client = MlflowClient(uri)
    # the same MLflow run continues, FINISHED, and no epoch is missing or doubled
    assert resumed.announcements["mlflow_run_id"] == point.announcements["mlflow_run_id"]
    parent = client.get_run(resumed.announcements["mlflow_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["automl_bin.resumed"] == "true"
    resumed_search = _search_run(client, resumed)
    straight_search = _search_run(client, straight)
    assert resumed_search.info.status == "FINISHED"
    for key in ("train_loss", "val_acc", "alpha_entropy"):
        got = _history(client, resumed_search.info.run_id, key)
        want = _history(client, straight_search.info.run_id, key)
        assert [s for s, _ in got] == list(range(EPOCHS)), key
        assert [v for _, v in got] == pytest.approx([v for _, v in want], abs=1e-6), key
    assert (folder / "search" / "search_curves.png").is_file()


def test_seeded_cpu_runs_repeat(tmp_path, runs):
    straight = runs[0]
    plugins = make_plugins()
    recipe, again_uri = _recipe(tmp_path, name="again")
    again = run(resolve(recipe, plugins.registry), plugins, Progress(enabled=False))
    assert again.genotype == straight.genotype
    assert again.summary.get("search_seconds") is not None
    # and the same metrics, epoch by epoch, to 1e-6
    want = _search_histories(runs[-1], straight)
    got = _search_histories(again_uri, again)
    for key, values in got.items():
        assert len(values) == EPOCHS and values == pytest.approx(want[key], abs=1e-6), key


def _search_histories(uri, result):
    """The per-epoch train_loss, val_acc and alpha_entropy of ``result``'s search run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    child = _search_run(client, result)
    return {key: [v for _, v in _history(client, child.info.run_id, key)]
            for key in ("train_loss", "val_acc", "alpha_entropy")}


def test_resume_errors_are_clear(tmp_path, runs):
    straight, resumed, folder, *_ = runs
    with pytest.raises(UsageError, match="already FINISHED"):
        find_resume_point(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="has no search_checkpoint.pt"):
        find_resume_point(empty)
    bad = tmp_path / "search_checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="truncated, corrupt"):
        load_checkpoint(bad)


def test_checkpoint_with_code_is_refused(tmp_path):
    """torch.load(weights_only=True): a pickled object that would run code is not loaded."""
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "search_checkpoint.pt"
    torch.save({"epoch": 0, "strategy": Evil()}, path)
    with pytest.raises(UsageError, match="never code"):
        load_checkpoint(path)


def test_cli_resume_needs_one_target_and_no_set(tmp_path):
    out = CliRunner().invoke(cli, ["run", "--resume", str(tmp_path), "--set", "strategy.epochs=1"])
    assert out.exit_code == 2 and "drop --set" in out.output
    out = CliRunner().invoke(cli, ["run", "--resume", str(tmp_path / "missing")])
    assert out.exit_code == 2 and "does not exist" in out.output


# --------------------------------------------------------------------------------------------
# a tracking server that goes away
# --------------------------------------------------------------------------------------------


def test_tracking_server_lost_mid_search_stops_resumably_and_loses_no_epoch(tmp_path,
                                                                            monkeypatch):
    """[tracking] on_error = "stop" (the default): when the server goes away during epoch 2 the
    run stops with its checkpoint; once it is back, --resume continues the same tracked run and
    every epoch's metrics are there."""
    from mlflow.tracking import MlflowClient

    import automl_bin_plugins.tracking.mlflow_tracker as tracker
    from automl_bin.errors import StopRun

    plugins = make_plugins()
    recipe, uri = _recipe(tmp_path, name="outage")
    real = _lose_server_at_second_epoch(monkeypatch, lambda metrics: "train_loss" in metrics)
    with pytest.raises(StopRun, match="server gone.*automl-bin run --resume"):
        run(resolve(recipe, plugins.registry), plugins, Progress(enabled=False))
    folder = max((tmp_path / "runs" / "outage").iterdir())
    assert json.loads((folder / "summary.json").read_text())["status"] == "FAILED"

    monkeypatch.setattr(tracker, "_log_metrics", real)  # the server is back
    point = find_resume_point(folder)
    assert point.checkpoint["epoch"] == 1  # epoch 2 finished and was checkpointed
    result = run(resolve(parse_recipe(point.recipe_text), plugins.registry), plugins,
                 Progress(enabled=False), resume=point)
    client = MlflowClient(uri)
    parent = client.get_run(result.announcements["mlflow_run_id"])
    assert parent.info.run_id == point.announcements["mlflow_run_id"]
    assert parent.info.status == "FINISHED"
    (search,) = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.phase = 'search'")
    assert [s for s, _ in _history(client, search.info.run_id, "train_loss")] == list(range(EPOCHS))


def _lose_server_at_second_epoch(monkeypatch, is_epoch):
    """The sqlite store stands in for a server: treat it as remote and fail the logging of the
    second batch of metrics ``is_epoch`` accepts. Returns the real logging function."""
    import automl_bin_plugins.tracking.mlflow_tracker as tracker

    real, calls = tracker._log_metrics, {"n": 0}

    def flaky(client, run_id, metrics, step):
        if is_epoch(metrics):
            calls["n"] += 1
            if calls["n"] == 2:
                raise ConnectionError("server gone")
        return real(client, run_id, metrics, step)

    monkeypatch.setattr(tracker, "_is_remote", lambda uri: True)
    monkeypatch.setattr(tracker, "_probe", lambda uri: None)
    monkeypatch.setattr(tracker, "_log_metrics", flaky)
    return real


def test_closed_tracking_port_stops_before_training(tmp_path):
    """A tracking server that is down at the start: the run stops at once, says why and how to
    go on, and trains nothing (no epoch can be lost)."""
    import socket

    from automl_bin.errors import StopRun

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends
    plugins = make_plugins()
    recipe = parse_recipe(_tiny_text(), [
        f'tracking.uri="http://127.0.0.1:{port}"',
        f"experiment.output_dir={json.dumps(str(tmp_path / 'runs'))}"])
    with pytest.raises(StopRun, match="unreachable.*Nothing was trained.*on_error"):
        run(resolve(recipe, plugins.registry), plugins, Progress(enabled=False))
    folder = max((tmp_path / "runs" / "closed").iterdir())
    assert json.loads((folder / "summary.json").read_text())["status"] == "FAILED"
    assert not (folder / "search_checkpoint.pt").exists()


def _tiny_text():
    return tiny_recipe_text("darts", name="closed", retrain=False,
                            strategy_params={"epochs": EPOCHS, "max_steps": 2})


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """The second checkpoint cannot be written (ENOSPC): the first stays intact, no temporary
    file is left, and the run stops with a message that says so; it can be resumed."""
    import errno

    import automl_bin.checkpoint as checkpoint
    from automl_bin.errors import StopRun

    plugins = make_plugins()
    recipe, _ = _recipe(tmp_path, name="full")
    real_fsync, calls = os.fsync, {"n": 0}

    def fsync(fd):
        if ".search_checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            calls["n"] += 1
            if calls["n"] == 2:  # the checkpoint of the second epoch
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    with pytest.raises(StopRun, match="No space left on device.*previous checkpoint is intact"):
        run(resolve(recipe, plugins.registry), plugins, Progress(enabled=False))
    folder = max((tmp_path / "runs" / "full").iterdir())
    assert not list(folder.glob(".search_checkpoint.pt.*"))  # no temp file left behind
    monkeypatch.setattr(checkpoint.os, "fsync", real_fsync)
    assert find_resume_point(folder).checkpoint["epoch"] == 0


# --------------------------------------------------------------------------------------------
# interrupted while retraining
# --------------------------------------------------------------------------------------------

RETRAIN_EPOCHS = 3


def _retrain_recipe(tmp_path, name):
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    text = tiny_recipe_text("darts", name=name, strategy_params={"epochs": 2, "max_steps": 2},
                            retrain_params={"epochs": RETRAIN_EPOCHS, "max_steps": 2})
    return parse_recipe(text, [f"tracking.uri={json.dumps(uri)}",
                               f"experiment.output_dir={json.dumps(str(tmp_path / 'runs'))}"]), uri


@pytest.fixture(scope="module")
def straight_retrain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("straight_retrain")
    plugins = make_plugins()
    recipe, uri = _retrain_recipe(tmp, "straight")
    return run(resolve(recipe, plugins.registry), plugins, Progress(enabled=False)), uri


def _phase_run(client, parent_id, phase):
    parent = client.get_run(parent_id)
    (child,) = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.phase = '{phase}'")
    return child


@pytest.mark.parametrize("fault", ["sigterm", "tracking_lost"])
def test_run_stopped_while_retraining_resumes_its_retraining(tmp_path, monkeypatch,
                                                             straight_retrain, fault):
    """Stopped after the first retrain epoch (SIGTERM), or when the tracking server goes away
    while logging the second one: --resume skips the finished search, continues the retraining
    from its checkpoint in the same MLflow runs, and ends with the uninterrupted run's test
    accuracy and per-epoch metrics; no epoch is lost or logged twice."""
    from mlflow.tracking import MlflowClient

    import automl_bin_plugins.tracking.mlflow_tracker as tracker
    from automl_bin.errors import StopRun

    straight, straight_uri = straight_retrain
    recipe, uri = _retrain_recipe(tmp_path, "stopped")
    if fault == "sigterm":
        module = types.ModuleType("sigterm_in_retrain")

        @hookimpl
        def on_epoch_end(run, phase, epoch):
            if phase == "retrain" and epoch == 0:
                os.kill(os.getpid(), signal.SIGTERM)

        module.on_epoch_end = on_epoch_end
        plugins, stopped_at, error = make_plugins(("killer", module)), 0, RunInterrupted
    else:
        real = _lose_server_at_second_epoch(  # a retrain epoch's metrics
            monkeypatch, lambda metrics: "test_acc" in metrics and "epoch_seconds" in metrics)
        plugins, stopped_at, error = make_plugins(), 1, StopRun
    with pytest.raises(error, match="automl-bin run --resume"):
        run(resolve(recipe, plugins.registry), plugins, Progress(enabled=False))
    if fault == "tracking_lost":
        monkeypatch.setattr(tracker, "_log_metrics", real)  # the server is back
    folder = max((tmp_path / "runs" / "stopped").iterdir())
    from automl_bin.resume import load_state

    assert load_state(folder / "retrain_checkpoint.pt")["epoch"] == stopped_at
    point = find_resume_point(folder)
    plugins = make_plugins()
    resumed = run(resolve(parse_recipe(point.recipe_text), plugins.registry), plugins,
                  Progress(enabled=False), resume=point)

    assert resumed.genotype == straight.genotype
    assert resumed.summary["test_acc"] == straight.summary["test_acc"]
    assert resumed.summary["test_loss"] == pytest.approx(straight.summary["test_loss"], abs=1e-6)
    client, straight_client = MlflowClient(uri), MlflowClient(straight_uri)
    parent_id = resumed.announcements["mlflow_run_id"]
    assert parent_id == point.announcements["mlflow_run_id"]
    assert client.get_run(parent_id).info.status == "FINISHED"
    retrain = _phase_run(client, parent_id, "retrain")
    want = _phase_run(straight_client, straight.announcements["mlflow_run_id"], "retrain")
    assert retrain.info.status == "FINISHED"
    for key in ("train_loss", "lr", "test_acc"):  # (test_acc is also logged at step 0 at the end)
        got = _history(client, retrain.info.run_id, key)
        expected = _history(straight_client, want.info.run_id, key)
        assert [s for s, _ in got] == [s for s, _ in expected], key
        assert sorted({s for s, _ in got}) == list(range(RETRAIN_EPOCHS)), key
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], abs=1e-6), key
    search = _phase_run(client, parent_id, "search")
    assert search.info.status == "FINISHED"
    assert len(client.get_metric_history(search.info.run_id, "search_seconds")) == 1
    assert [s for s, _ in _history(client, search.info.run_id, "train_loss")] == [0, 1]
    assert (folder / "retrain" / "retrain_curves.png").is_file()

