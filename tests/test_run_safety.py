"""Nothing lost, nothing silent (issue 19, run side): edited recipes on --resume, the run folder
lock, runs whose process died, SIGTERM to the --nproc launcher, divergence, and strategy states
that a weights_only checkpoint cannot hold."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
import types
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner

from automl_bin import hookimpl
from automl_bin.cli.main import cli
from automl_bin.progress import Progress
from automl_bin.recipe import parse_recipe, resolve
from automl_bin.resume import find_resume_point
from automl_bin.run_lock import RunLockedError, acquire_run_lock, lock_holder
from automl_bin.runner import RunInterrupted, UnloadableCheckpointError, run
from automl_bin.testing import make_plugins, tiny_recipe_text


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"


def _recipe_text(tmp_path: Path, name: str, strategy: str = "darts", plugins=None,
                 **strategy_params) -> str:
    doc = tomllib.loads(tiny_recipe_text(strategy, name=name, retrain=False, plugins=plugins,
                                         strategy_params={"epochs": 2, "max_steps": 1,
                                                          **strategy_params}))
    doc["experiment"]["output_dir"] = str(tmp_path / "runs")
    doc["tracking"]["uri"] = _uri(tmp_path)
    return tomli_w.dumps(doc)


def _sigterm_after_first_epoch():
    module = types.ModuleType("sigterm_after_first_epoch")

    @hookimpl
    def on_epoch_end(run, phase, epoch):
        if phase == "search" and epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    module.on_epoch_end = on_epoch_end
    return module


def _client(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(_uri(tmp_path))


def _tracked(tmp_path: Path, run_dir: Path):
    """The MLflow parent run of ``run_dir`` and its phase runs by name."""
    client = _client(tmp_path)
    run_id = json.loads((run_dir / "announcements.json").read_text())["mlflow_run_id"]
    parent = client.get_run(run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
    return parent, {c.info.run_name: c for c in children}


def test_resume_refuses_an_edited_recipe_unless_the_change_is_allowed(tmp_path):
    plugins = make_plugins()
    recipe = parse_recipe(_recipe_text(tmp_path, "edited"))
    killer = make_plugins(("killer", _sigterm_after_first_epoch()))
    with pytest.raises(RunInterrupted):
        run(resolve(recipe, killer.registry), killer, Progress(enabled=False))
    (folder,) = (tmp_path / "runs" / "edited").iterdir()
    original = (folder / "recipe.toml").read_text()

    # a second process may not resume (write) the run while this one holds it
    lock = acquire_run_lock(folder)
    try:
        point = find_resume_point(folder)
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            run(resolve(parse_recipe(point.recipe_text), plugins.registry), plugins,
                Progress(enabled=False), resume=point)
    finally:
        lock.release()

    doc = tomllib.loads(original)
    doc["experiment"]["seed"] = 7
    doc["strategy"]["epochs"] = 3
    doc["search_space"]["init_channels"] = 8  # a network change
    (folder / "recipe.toml").write_text(tomli_w.dumps(doc))
    refused = CliRunner().invoke(cli, ["run", "--resume", str(folder), "--quiet"])
    assert refused.exit_code == 2, refused.output
    for change in ("experiment.seed: 3 -> 7", "strategy.epochs: 2 -> 3",
                   "search_space.init_channels: 4 -> 8", "--allow-changes"):
        assert change in " ".join(refused.output.split()), change
    # allowing one key does not let the others through
    partly = CliRunner().invoke(cli, ["run", "--resume", str(folder), "--allow-changes",
                                      "strategy.epochs", "--quiet"])
    assert partly.exit_code == 2 and "strategy.epochs" not in partly.output

    doc = tomllib.loads(original)
    doc["strategy"]["epochs"] = 3
    (folder / "recipe.toml").write_text(tomli_w.dumps(doc))
    resumed = CliRunner().invoke(cli, ["run", "--resume", str(folder), "--allow-changes",
                                       "strategy.epochs"])
    assert resumed.exit_code == 0, resumed.output
    assert "strategy.epochs: 2 -> 3" in resumed.output
    (entry,) = json.loads((folder / "resume_changes.json").read_text())
    assert entry["changes"] == {"strategy.epochs": {"before": "2", "after": "3"}}
    parent, children = _tracked(tmp_path, folder)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["automl_bin.resume_changes"] == "strategy.epochs: 2 -> 3"
    steps = [m.step for m in _client(tmp_path).get_metric_history(
        children["search"].info.run_id, "train_loss")]
    assert sorted(steps) == [0, 1, 2]  # the third epoch the change allowed ran, once each


def test_resume_of_a_live_run_is_refused_with_its_pid(tmp_path):
    folder = tmp_path / "runs" / "live" / "20260101-000000-abcdef"
    folder.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from automl_bin.run_lock import acquire_run_lock
            lock = acquire_run_lock({str(folder)!r})
            print("locked", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert lock_holder(folder) == holder.pid
        result = CliRunner().invoke(cli, ["run", "--resume", str(folder)])
        assert result.exit_code == 2, result.output
        assert f"process {holder.pid}" in result.output and "still running" in result.output
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(folder) is None  # the kernel dropped the lock with the process


def test_a_run_killed_before_its_first_checkpoint_is_marked_killed_on_resume(tmp_path):
    text = _recipe_text(tmp_path, "dead")
    script = textwrap.dedent(f"""
        import os, signal
        from automl_bin.progress import Progress
        from automl_bin.recipe import parse_recipe, resolve
        from automl_bin.runner import run
        from automl_bin.testing import make_plugins

        darts = make_plugins().registry.get("strategy", "darts").cls

        class Doomed(darts):
            def run_epoch(self, epoch):
                os.kill(os.getpid(), signal.SIGKILL)  # no handler, no checkpoint, no end

        plugins = make_plugins(("doomed", Doomed))
        recipe = parse_recipe({text!r}, ['strategy.name="doomed"'])
        run(resolve(recipe, plugins.registry), plugins, Progress(enabled=False))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    (folder,) = (tmp_path / "runs" / "dead").iterdir()
    parent, children = _tracked(tmp_path, folder)
    assert parent.info.status == "RUNNING" and children["search"].info.status == "RUNNING"

    result = CliRunner().invoke(cli, ["run", "--resume", str(folder)])
    assert result.exit_code == 2
    assert "marked KILLED" in result.output and "search_checkpoint.pt" in result.output
    parent, children = _tracked(tmp_path, folder)
    assert parent.info.status == "KILLED" and children["search"].info.status == "KILLED"
    assert json.loads((folder / "summary.json").read_text())["status"] == "KILLED"


def test_divergence_stops_the_run_failed_naming_phase_epoch_quantity_and_key(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(_recipe_text(tmp_path, "diverged", lr=1e30, arch_lr=1e30))
    result = CliRunner().invoke(cli, ["run", str(recipe), "--quiet"])
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert "The search diverged at epoch 1" in message and "not finite" in message
    assert re.search(r"the metric '\w+' \((nan|inf|-inf)\) is not finite", message), message
    assert "`[strategy] lr`" in message and "`[strategy] arch_lr`" in message
    (folder,) = (tmp_path / "runs" / "diverged").iterdir()
    assert json.loads((folder / "summary.json").read_text())["status"] == "FAILED"
    assert not (folder / "genotype.json").exists()  # nothing derived from NaN α
    parent, children = _tracked(tmp_path, folder)
    assert parent.info.status == "FAILED" and children["search"].info.status == "FAILED"


def test_non_finite_alpha_or_operation_weights_are_named():
    import torch

    from automl_bin.finite_check import NonFiniteError, check_search_epoch

    check_search_epoch(0, {"train_loss": 1.0, "note": "text"}, {"normal": [[0.5, 0.5]]},
                       [torch.zeros(2, 3)])  # finite: nothing raised
    with pytest.raises(NonFiniteError, match=r"epoch 3: the operation weights of cell "
                                             r"'reduce'.*`\[strategy\] arch_lr`"):
        check_search_epoch(2, {"train_loss": 1.0}, {"normal": [[0.5, 0.5]],
                                                    "reduce": [[float("nan"), 1.0]]}, [])
    with pytest.raises(NonFiniteError, match=r"epoch 1: the architecture parameter α #1"):
        check_search_epoch(0, {}, None, [torch.zeros(2), torch.tensor([0.0, float("inf")])])


class Opaque:
    """A value torch.load(weights_only=True) refuses: an arbitrary class instance."""


def test_a_state_weights_only_cannot_read_fails_at_the_first_checkpoint(tmp_path):
    darts = make_plugins().registry.get("strategy", "darts").cls

    class OpaqueState(darts):
        def state_dict(self):
            return {**super().state_dict(), "schedule": Opaque()}

    plugins = make_plugins(("opaque_state", OpaqueState))
    text = _recipe_text(tmp_path, "opaque", strategy="opaque_state", plugins=plugins)
    with pytest.raises(UnloadableCheckpointError) as info:
        run(resolve(parse_recipe(text), plugins.registry), plugins, Progress(enabled=False))
    message = str(info.value)
    assert "checkpoint['strategy']['schedule']" in message and "Opaque" in message
    (folder,) = (tmp_path / "runs" / "opaque").iterdir()
    assert not (folder / "search_checkpoint.pt").exists()
    assert json.loads((folder / "summary.json").read_text())["status"] == "FAILED"
    assert not (folder / "search_logged_epoch").exists()  # the epoch was never reported


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    from automl_bin.distributed import _descendants

    return list(_descendants(pid))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_to_the_nproc_launcher_reaches_every_worker(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(_recipe_text(tmp_path, "ddp_term", epochs=200))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "automl_bin", "run", "--nproc", "2", str(recipe), "--quiet"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    runs = tmp_path / "runs" / "ddp_term"
    while time.monotonic() < deadline and launcher.poll() is None:
        folders = list(runs.iterdir()) if runs.is_dir() else []
        if folders and (folders[0] / "search_checkpoint.pt").exists():
            break
        time.sleep(0.5)
    assert launcher.poll() is None, launcher.stdout.read()[-3000:]
    processes = _children(launcher.pid)  # torchrun and its 2 workers (at least)
    assert len(processes) >= 3
    launcher.send_signal(signal.SIGTERM)
    output, _ = launcher.communicate(timeout=180)
    assert launcher.returncode == 128 + signal.SIGTERM, output[-3000:]
    survivors = [pid for pid in processes if _alive(pid)]
    assert not survivors, (survivors, output[-3000:])
    (folder,) = runs.iterdir()
    assert json.loads((folder / "summary.json").read_text())["status"] == "KILLED"
    assert "--resume" in output and (folder / "search_checkpoint.pt").is_file()  # resumable
    assert lock_holder(folder) is None
    parent, _ = _tracked(tmp_path, folder)
    assert parent.info.status == "KILLED"
