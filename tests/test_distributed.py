"""Data-parallel search and retrain (`automl_bin.distributed`, torchrun, ``run --nproc``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w
import torch
import torch.distributed as dist
from torch import nn

from automl_bin import distributed
from automl_bin.distributed import DistContext


def _ctx(rank: int, world: int) -> DistContext:
    return DistContext(rank=rank, world_size=world, local_rank=rank, backend="gloo")


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.fixture
def gloo_world_of_one(tmp_path: Path):
    """A real gloo process group of one rank, so the collectives run without spawning."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    yield _ctx(0, 1)
    dist.destroy_process_group()


@pytest.mark.parametrize("batch", [10, 7, 1])
def test_sharded_weighted_mean_is_the_full_batch_gradient(batch: int) -> None:
    # the sum reduce_mean performs over 2 ranks, done by hand: Σ count_r·g_r / Σ count_r
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(batch, 5), torch.randint(0, 3, (batch,))
    full = _grads(model, x, y)
    total = [torch.zeros_like(g) for g in full]
    count = 0
    for rank in range(2):
        xs, ys = distributed.shard(x, y, _ctx(rank, 2))
        for t, g in zip(total, _grads(model, xs, ys)):
            t += g * len(ys)
        count += len(ys)
    for t, g in zip(total, full):
        torch.testing.assert_close(t / count, g, rtol=1e-5, atol=1e-6)


def test_shards_cover_the_batch_once() -> None:
    x, y = torch.arange(7).float().view(7, 1), torch.arange(7)
    seen = torch.cat([distributed.shard(x, y, _ctx(r, 3))[1] for r in range(3)])
    assert sorted(seen.tolist()) == list(range(7))
    assert distributed.shard(x[:2], y[:2], _ctx(1, 3))[1].tolist() == [0, 1]  # too small: whole


def test_all_reduce_grads_in_a_gloo_group(gloo_world_of_one: DistContext) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    x, y = torch.randn(6, 4), torch.randint(0, 2, (6,))
    expected = _grads(model, x, y)
    model.bias.grad = None  # a parameter without gradient stays without one
    distributed.all_reduce_grads(model.parameters(), gloo_world_of_one, len(y))
    torch.testing.assert_close(model.weight.grad, expected[0])
    assert model.bias.grad is None
    assert distributed.max_divergence([model.weight], gloo_world_of_one) == 0.0


def test_sharded_batches_shard_training_passes_only() -> None:
    from automl_bin.testing import tiny_splits

    inner = tiny_splits()["train"]
    sharded = distributed.ShardedBatches(inner, _ctx(1, 2))
    assert len(sharded) == len(inner) and sharded.num_samples == inner.num_samples
    for (xs, ys), (x, y) in zip(sharded.batches(0), inner.batches(0)):
        assert torch.equal(ys, y[1::2]) and torch.equal(xs, x[1::2])
    for (_, ys), (_, y) in zip(sharded.batches(0, shuffle=False), inner.batches(0, shuffle=False)):
        assert torch.equal(ys, y)
    assert isinstance(sharded.with_options(batch_size=5), distributed.ShardedBatches)


def test_nproc_relaunches_through_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from automl_bin.cli import cli

    calls: list[list[str]] = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    # the launcher (which also forwards signals to torchrun) gets exactly this command
    monkeypatch.setattr(distributed, "launch", lambda nproc, args: calls.append(
        distributed.torchrun_command(nproc, args)) or 0)
    result = CliRunner().invoke(cli, ["run", "--nproc", "2", "r.toml", "--set", "a.b=1",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert calls == [[sys.executable, "-m", "torch.distributed.run", "--standalone",
                      "--nproc_per_node=2", "-m", "automl_bin", "run", "r.toml", "--set",
                      "a.b=1", "--quiet"]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_two_process_search_and_retrain(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from automl_bin.testing import tiny_recipe_text

    doc = tomllib.loads(tiny_recipe_text("darts", name="ddp", retrain=True))
    doc["experiment"]["output_dir"] = str(tmp_path / "runs")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    doc["tracking"]["uri"] = uri
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(tomli_w.dumps(doc), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(_free_port()), "-m", "automl_bin", "run", str(recipe), "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("Genotype:") == 1  # rank 0 alone reports

    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = [r for r in runs if r.data.tags.get("automl_bin.role") == "run"]
    assert len(parents) == 1
    search = [r for r in runs if r.info.run_name == "search"]
    assert len(search) == 1 and search[0].data.metrics["ddp_alpha_max_diff"] == 0.0
    assert len(list((tmp_path / "runs" / "ddp").iterdir())) == 1  # one run folder


@pytest.mark.slow
def test_two_processes_resume_a_run_stopped_while_retraining(tmp_path: Path) -> None:
    """A run stopped by SIGTERM after its first retrain epoch continues in 2 torchrun
    processes: every rank reads rank 0's checkpoints, and the one tracked run ends FINISHED with
    each retrain epoch logged once."""
    import signal
    import types

    from mlflow.tracking import MlflowClient

    from automl_bin import hookimpl
    from automl_bin.progress import Progress
    from automl_bin.recipe import parse_recipe, resolve
    from automl_bin.runner import RunInterrupted, run
    from automl_bin.testing import make_plugins, tiny_recipe_text

    doc = tomllib.loads(tiny_recipe_text("darts", name="ddp_resume",
                                         retrain_params={"epochs": 2, "max_steps": 2}))
    doc["experiment"]["output_dir"] = str(tmp_path / "runs")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    doc["tracking"]["uri"] = uri
    killer = types.ModuleType("sigterm_in_retrain")

    @hookimpl
    def on_epoch_end(run, phase, epoch):
        if phase == "retrain" and epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    killer.on_epoch_end = on_epoch_end
    plugins = make_plugins(("killer", killer))
    with pytest.raises(RunInterrupted):
        run(resolve(parse_recipe(tomli_w.dumps(doc)), plugins.registry), plugins,
            Progress(enabled=False))
    (folder,) = (tmp_path / "runs" / "ddp_resume").iterdir()

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(_free_port()), "-m", "automl_bin", "run", "--resume", str(folder),
         "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '"status": "FINISHED"' in (folder / "summary.json").read_text()
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len([r for r in runs if r.data.tags.get("automl_bin.role") == "run"]) == 1
    (retrain,) = [r for r in runs if r.info.run_name == "retrain"]
    assert retrain.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(retrain.info.run_id, "train_loss")]
    assert sorted(steps) == [0, 1]
