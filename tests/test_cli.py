"""The automl-bin CLI through click's runner and as a subprocess, end to end with MLflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from automl_bin.cli import cli

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.toml"))


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _write(tmp_path: Path, text: str, name: str = "recipe.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_help_lists_commands_with_examples():
    result = _invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "check", "plugins", "ui"):
        assert command in result.output
        sub = _invoke(command, "--help")
        assert sub.exit_code == 0 and "Examples:" in sub.output


def test_plugins_lists_every_builtin():
    result = _invoke("plugins", "--json")
    assert result.exit_code == 0
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.output)["components"]}
    expected = {("search_space", "darts"), ("strategy", "darts"), ("strategy", "random"),
                ("binarizer", "none"), ("dataset", "cifar10"), ("dataset", "fashion_mnist"),
                ("dataset", "synthetic"), ("estimator", "supernet"), ("estimator", "retrain")}
    assert expected <= set(rows)
    assert all(rows[k]["distribution"] == "automl-bin" for k in expected)
    table = _invoke("plugins").output
    assert "KIND" in table and "fashion_mnist" in table and "automl-bin" in table


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_shipped_recipes_check(recipe):
    result = _invoke("check", str(recipe))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK:")


def test_check_misspelled_key_is_one_paragraph(tmp_path, tiny_recipe):
    path = _write(tmp_path, tiny_recipe().replace("epochs = 2", "epohcs = 2"))
    result = CliRunner().invoke(cli, ["check", path])
    assert result.exit_code == 2
    out = result.output
    assert "strategy.epohcs" in out and "Did you mean 'epochs'" in out
    assert "Traceback" not in out and "\n\n" not in out.strip()


def test_check_unknown_strategy_lists_known(tmp_path, tiny_recipe):
    path = _write(tmp_path, tiny_recipe(strategy="dcp"))
    result = CliRunner().invoke(cli, ["check", path])
    assert result.exit_code == 2
    assert "Known strategys" in result.output or "Known strategies" in result.output
    assert "darts" in result.output and "random" in result.output


def test_bad_set_and_missing_file_exit_2(tmp_path, tiny_recipe):
    path = _write(tmp_path, tiny_recipe())
    assert CliRunner().invoke(cli, ["check", path, "--set", "nonsense"]).exit_code == 2
    assert CliRunner().invoke(cli, ["check", str(tmp_path / "missing.toml")]).exit_code == 2
    res = CliRunner().invoke(cli, ["check", path, "--set", "data.train_portion=2"])
    assert res.exit_code == 2 and "train_portion" in res.output


def test_missing_dataset_exits_2_with_instructions(tmp_path, tiny_recipe):
    text = tiny_recipe(tracking=False)
    path = _write(tmp_path, text)
    result = CliRunner().invoke(cli, ["run", path, "--quiet", "--set", 'data.name="cifar10"',
                                      "--set", f'data.root="{tmp_path / "nodata"}"',
                                      "--set", "data.num_classes=3"])
    # cifar10 has no num_classes key: the recipe is refused before any data is touched
    assert result.exit_code == 2 and "data.num_classes" in result.output
    clean = "\n".join(line for line in text.splitlines()
                      if not line.split("=")[0].strip() in
                      {"num_classes", "image_size", "channels", "train_size", "test_size"})
    path = _write(tmp_path, clean.replace('name = "synthetic"', 'name = "cifar10"\nroot = "'
                                          + str(tmp_path / "nodata") + '"'))
    result = CliRunner().invoke(cli, ["run", path, "--quiet"])
    assert result.exit_code == 2
    flat = " ".join(result.output.split())  # the paragraph is wrapped at 100 columns
    assert "download = true" in flat and "Traceback" not in flat


def test_end_to_end_run_is_tracked(tmp_path, tiny_recipe):
    """A run logs a parent run with nested search/retrain runs, metrics, tags and artifacts."""
    from mlflow.tracking import MlflowClient

    path = _write(tmp_path, tiny_recipe(name="e2e"))
    result = _invoke("run", path, "--quiet")
    assert result.exit_code == 0, result.output
    assert "Genotype: Genotype<darts>" in result.output and "test_acc:" in result.output
    run_id = result.output.split("MLflow run id: ")[1].split()[0]

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("e2e")
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED"
    for tag in ("strategy", "search_space", "binarizer", "dataset", "automl_bin_version"):
        assert tag in parent.data.tags
    assert parent.data.tags["strategy"] == "darts"
    assert parent.data.params["strategy.epochs"] == "2"
    for metric in ("search_seconds", "retrain_seconds", "test_acc", "params", "flops"):
        assert metric in parent.data.metrics
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    by_name = {r.info.run_name: r for r in children}
    assert set(by_name) == {"search", "retrain"}
    search = by_name["search"]
    for metric in ("train_loss", "train_acc", "val_loss", "val_acc", "alpha_entropy",
                   "epoch_seconds"):
        history = client.get_metric_history(search.info.run_id, metric)
        assert [m.step for m in history] == [0, 1], metric
    artifacts = {a.path for a in client.list_artifacts(search.info.run_id)}
    assert {"genotype.json", "op_weights.png"} <= artifacts
    assert "recipe.toml" in {a.path for a in client.list_artifacts(run_id)}
    assert "model.pt" in {a.path for a in client.list_artifacts(by_name["retrain"].info.run_id)}

    # a second run never overwrites the first one's outputs
    second = _invoke("run", path, "--quiet")
    assert second.exit_code == 0
    dirs = sorted((tmp_path / "runs" / "e2e").iterdir())
    assert len(dirs) == 2 and all((d / "genotype.json").exists() for d in dirs)
    assert second.output.split("MLflow run id: ")[1].split()[0] != run_id


def test_sigterm_marks_run_killed_and_keeps_checkpoint(tmp_path, tiny_recipe):
    """SIGTERM during the search ends the run KILLED (exit 130) with its checkpoint kept."""
    from mlflow.tracking import MlflowClient

    text = tiny_recipe(name="killed").replace("epochs = 2\nmax_steps = 2",
                                              "epochs = 200\nmax_steps = 2")
    path = _write(tmp_path, text)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "automl_bin", "run", path, "--plain"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    checkpoint = None
    while time.time() < deadline and checkpoint is None:
        found = list((tmp_path / "runs").glob("killed/*/search_checkpoint.pt"))
        checkpoint = found[0] if found else None
        time.sleep(0.2)
    assert checkpoint is not None, "no checkpoint appeared"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "KILLED" in out
    assert checkpoint.exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("killed")
    runs = client.search_runs([exp.experiment_id])
    assert {r.info.status for r in runs} == {"KILLED"}


def test_check_and_plugins_do_not_import_torch(tmp_path, tiny_recipe):
    """The fast commands load no torch and no mlflow (lazy imports)."""
    path = _write(tmp_path, tiny_recipe())
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('HEAVY', sorted(m for m in ('torch', 'mlflow') "
            "if m in sys.modules)))\n"
            "from automl_bin.cli import main\n"
            "main(sys.argv[1:])\n")
    for args in (["check", path], ["plugins"], ["--help"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "HEAVY []" in out.stdout, (args, out.stdout)


def test_python_dash_m_is_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "automl_bin", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "automl-bin" in out.stdout


def test_closed_stdout_stops_quietly(tmp_path, tiny_recipe):
    """`automl-bin check RECIPE | head`: a reader that went away is no 'Failed' paragraph."""
    path = _write(tmp_path, tiny_recipe())
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        out = subprocess.run([sys.executable, "-m", "automl_bin", "check", path],
                             stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert out.returncode == 141, out.stderr
    assert out.stderr == ""


def test_runtime_failure_is_one_paragraph_exit_1(tmp_path, tiny_recipe, monkeypatch):
    """An unexpected exception is reported in one paragraph with exit 1, no traceback."""
    import automl_bin.runner

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(automl_bin.runner, "run", boom)
    monkeypatch.delenv("AUTOML_BIN_DEBUG", raising=False)
    path = _write(tmp_path, tiny_recipe(tracking=False))
    result = CliRunner().invoke(cli, ["run", path, "--quiet"])
    assert result.exit_code == 1
    assert "Failed: RuntimeError: boom" in result.output and "Traceback" not in result.output
    assert "AUTOML_BIN_DEBUG" in " ".join(result.output.split())


def test_dcp_nas_run_is_tagged_with_ablation_switches(tmp_path, tiny_recipe):
    """A tiny DCP-NAS run tags T.P./Hessian/D.O. and logs Parent/Child accuracy, KL, distance."""
    from mlflow.tracking import MlflowClient

    text = tiny_recipe(strategy="dcp_nas", name="dcp")
    text = text.replace('[search_space]\nname = "darts"', '[search_space]\nname = "darts"\nops = "binary"')
    text = text.replace("[strategy]", '[binarizer]\nname = "recon"\n\n[strategy]')
    text = text.replace("epochs = 2\nmax_steps = 2", 'warmup_epochs = 0\nrounds = 1\nparent_epochs = 1\n'
                        'child_epochs = 1\nmax_steps = 2\neval_batches = 1\nhessian = "ggn"\n'
                        "decoupled = true")
    result = _invoke("run", _write(tmp_path, text), "--quiet")
    assert result.exit_code == 0, result.output
    run_id = result.output.split("MLflow run id: ")[1].split()[0]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    tags = client.get_run(run_id).data.tags
    assert (tags["tangent"], tags["hessian"], tags["decoupled"]) == ("true", "ggn", "true")
    exp = client.get_experiment_by_name("dcp")
    search = client.search_runs([exp.experiment_id], filter_string="tags.phase = 'search'")[0]
    for metric in ("parent_val_acc", "child_val_acc", "tangent_distance", "kl"):
        assert client.get_metric_history(search.info.run_id, metric), metric


def test_ui_prints_the_runs_table_urls():
    """`automl-bin ui` points at runs tables (#/experiments/<ID> alone is the GenAI overview)."""
    import click

    from automl_bin.cli import ui

    base = "http://127.0.0.1:5000"
    table = "/runs?workflowType=machine_learning"
    assert ui.runs_url(base + "/", "7") == f"{base}/#/experiments/7{table}"
    assert "runs?workflowType=machine_learning" in " ".join(_invoke("ui", "--help").output.split())
    experiments = [("0", "Default", False), ("1", "suite", True), ("2", "other", True)]

    def announce(experiment=None):
        runner = CliRunner()
        with runner.isolation() as (out, _, _):
            ui._announce(base, "sqlite:///x.db", experiment, experiments)
            return out.getvalue().decode()

    several = announce()
    assert f"MLflow UI: {base}/#/experiments " in several
    assert f"suite  {base}/#/experiments/1{table}" in several
    assert f"other  {base}/#/experiments/2{table}" in several and "Default" not in several
    assert announce("other").startswith(f"MLflow UI: {base}/#/experiments/2{table} ")
    assert announce("1").startswith(f"MLflow UI: {base}/#/experiments/1{table} ")
    with pytest.raises(click.UsageError, match="'suite', 'other'"):
        announce("missing")
    experiments[2] = ("2", "other", False)  # one experiment with runs: its table is the URL
    assert announce().startswith(f"MLflow UI: {base}/#/experiments/1{table} ")


def test_ui_reads_the_experiments_of_a_sqlite_store(tmp_path):
    """The experiments come from the file, so a wrong --experiment fails before any server.

    The tables here are the columns of MLflow's schema that are read; tests/test_ui_browser.py
    reads a store that MLflow wrote.
    """
    import sqlite3

    from automl_bin.cli.ui import sqlite_experiments

    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE experiments (experiment_id INTEGER, name TEXT, "
                    "lifecycle_stage TEXT, creation_time INTEGER)")
        con.execute("CREATE TABLE runs (run_uuid TEXT, experiment_id INTEGER, "
                    "lifecycle_stage TEXT)")
        con.executemany("INSERT INTO experiments VALUES (?, ?, ?, ?)",
                        [(0, "Default", "active", 1), (2, "empty", "active", 3),
                         (1, "with-runs", "active", 2), (3, "gone", "deleted", 4)])
        con.executemany("INSERT INTO runs VALUES (?, ?, ?)",
                        [("a", 1, "active"), ("b", 2, "deleted"), ("c", 3, "active")])
    con.close()
    assert sqlite_experiments(db) == [("0", "Default", False), ("1", "with-runs", True),
                                      ("2", "empty", False)]
    (tmp_path / "other.db").write_bytes(b"not a database")
    assert sqlite_experiments(tmp_path / "other.db") is None
    result = CliRunner().invoke(cli, ["ui", "--uri", f"sqlite:///{db}", "--experiment", "nope"])
    assert result.exit_code == 2 and "'with-runs'" in result.output
    assert "Starting" not in result.output
