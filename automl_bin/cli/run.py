"""``automl-bin run RECIPE``: search, retrain and track one experiment, or a whole suite."""

from __future__ import annotations

import os
from typing import Any

import click

from automl_bin.cli.common import load_plugins_warned, set_option
from automl_bin.tracking.store import uri_option_help
from automl_bin.errors import UsageError


@click.command("run", epilog="""\b
Examples:
  automl-bin run recipes/quickstart.toml
  automl-bin run recipes/quickstart.toml --set strategy.epochs=1 --set retrain.epochs=1
  automl-bin run recipes/darts_cifar.toml --set data.download=true
  automl-bin run recipes/table43_fmnist.toml --set experiment.seeds=1   # a suite
  automl-bin run --from-run 0123456789abcdef0123456789abcdef          # re-run a tracked run
  automl-bin run --resume runs/quickstart/20261123-101500-1a2b3c      # continue after Ctrl-C
  automl-bin run --nproc 2 recipes/quickstart.toml      # data parallel: 2 processes (torchrun)
""")
@click.argument("recipe", type=click.Path(dir_okay=False), required=False)
@set_option
@click.option("--from-run", "from_run", default=None, metavar="RUN_ID",
              help="Re-run exactly the recipe the tracked MLflow run RUN_ID used (a run, one "
                   "of its search/retrain runs, or a suite); --set still applies.")
@click.option("--resume", "resume", default=None, metavar="RUN",
              help="Continue an interrupted run (a run folder, its search_checkpoint.pt or its "
                   "MLflow run id) after its last finished search or retrain epoch, in the "
                   "same folder and MLflow run; or an interrupted suite (its suite folder): "
                   "finished runs are kept, the others resumed or run.")
@click.option("--allow-changes", "allow_changes", multiple=True, metavar="KEY",
              help="With --resume: accept these changes of the run folder's recipe.toml since "
                   "its checkpoint (a key such as strategy.epochs, or a whole table such as "
                   "retrain; repeat the option or separate keys with commas). Any other change "
                   "is refused; accepted ones are printed and recorded in the run.")
@click.option("--uri", default=None, metavar="URI",
              help="With --from-run or --resume: " + uri_option_help)
@click.option("--quiet", is_flag=True, help="Print only the final result.")
@click.option("--plain", is_flag=True, help="Log lines instead of progress bars.")
@click.option("--nproc", type=int, default=None, metavar="N",
              help="Data-parallel search and retraining in N processes on this machine (one per "
                   "GPU, or CPU processes with the gloo backend), started through torchrun; "
                   "strategies that support it only (the built-in one-shot ones). "
                   "See docs/scaling.md.")
def run_command(recipe: str | None, overrides: tuple[str, ...], from_run: str | None,
                resume: str | None, allow_changes: tuple[str, ...], uri: str | None,
                quiet: bool, plain: bool, nproc: int | None) -> None:
    """Run RECIPE: search, derive the genotype, retrain it and report test accuracy.

    A recipe with [[suite]] members, a [sweep] grid or [experiment] seeds runs every
    combination as its own tracked run under one MLflow suite run, then prints the comparison
    table (see `automl-bin compare`). Every run writes a new folder under [experiment]
    output_dir and is tracked in MLflow (see `automl-bin ui`). Ctrl-C stops it cleanly: the run
    is marked KILLED and the last checkpoint is kept.
    """
    from automl_bin.progress import Progress
    from automl_bin.suite import load_plan, parse_plan
    from automl_bin.suite_runner import resolve_plan, run_suite

    if sum(x is not None for x in (recipe, from_run, resume)) != 1:
        raise UsageError("Give one of a RECIPE file, --from-run RUN_ID or --resume RUN, e.g. "
                         "automl-bin run recipes/quickstart.toml.")
    allowed = [key.strip() for value in allow_changes for key in value.split(",")
               if key.strip()]
    if allowed and resume is None:
        raise UsageError("--allow-changes only applies to --resume RUN: it names the recipe keys "
                         "a resumed run may change. Drop it, or add --resume.")
    if nproc is not None:
        _relaunch(nproc, recipe, overrides, from_run, resume, uri, quiet, plain, allowed)
        return
    if resume is not None:
        _resume(resume, overrides, uri, Progress(enabled=not quiet, force_plain=plain),
                allowed)
        return
    if from_run is not None:
        from automl_bin.tracking.store import recipe_of_run

        text, source = recipe_of_run(from_run, uri)
        plan = parse_plan(text, overrides, source=source)
        click.echo(f"Re-running the {source}", err=True)
    else:
        plan = load_plan(recipe, overrides)  # type: ignore[arg-type]
    plugins = load_plugins_warned()
    resolved = resolve_plan(plan, plugins)
    progress = Progress(enabled=not quiet, force_plain=plain)
    if plan.is_suite and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("Data-parallel runs (torchrun, --nproc) take one recipe, not a suite; "
                         "run the suite without them, or each member on its own with --nproc.")
    if plan.is_suite:
        _print_suite(plan, run_suite(plan, resolved, plugins, progress))
        return
    from automl_bin.runner import run

    _print_result(run(resolved[0], plugins, progress))


def _relaunch(nproc: int, recipe: str | None, overrides: tuple[str, ...], from_run: str | None,
              resume: str | None, uri: str | None, quiet: bool, plain: bool,
              allowed: list[str]) -> None:
    """Run this same command in ``nproc`` torchrun processes (without --nproc) and exit with
    their status; torchrun sets the rank variables `automl_bin.distributed` reads. SIGTERM
    and Ctrl-C reach every worker (`automl_bin.distributed.launch`)."""
    import sys

    from automl_bin.distributed import launch

    if "WORLD_SIZE" in os.environ:
        raise UsageError("--nproc starts torchrun itself; this process already runs under "
                         "torchrun (WORLD_SIZE is set). Drop --nproc.")
    args = ["run"]
    if recipe is not None:
        args.append(recipe)
    for override in overrides:
        args += ["--set", override]
    for flag, value in (("--from-run", from_run), ("--resume", resume), ("--uri", uri)):
        if value is not None:
            args += [flag, value]
    for key in allowed:
        args += ["--allow-changes", key]
    args += ["--quiet"] * quiet + ["--plain"] * plain
    code = launch(nproc, args)
    if code:
        sys.exit(code)


def _print_suite(plan: Any, suite: Any) -> None:
    click.echo(suite.table, nl=False)
    click.echo(f"Suite folder: {suite.run_dir} (compare.md, compare.csv, plots)")
    if "mlflow_suite_run_id" in suite.announcements:
        click.echo(f"MLflow suite run id: {suite.announcements['mlflow_suite_run_id']}")
        click.echo(f"Compare again with: automl-bin compare {plan.name!r}")
    if suite.status != "FINISHED":
        raise UsageError(f"Every run of the suite failed; see {suite.run_dir / 'suite.json'}.")


def _print_result(result: Any) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return  # a data-parallel run: rank 0 reports for all ranks
    click.echo(f"Genotype: {result.genotype}")
    for key in ("test_acc", "params", "model_bits", "param_bits", "flops", "bops", "ops",
                "deployed_bytes", "training_bytes"):
        if key in result.summary:
            value = result.summary[key]
            click.echo(f"{key}: {value:.4f}" if key.endswith("acc") else f"{key}: {int(value)}")
    for key in ("memory_saving", "speedup_estimate"):
        if key in result.summary:
            click.echo(f"{key}: {result.summary[key]:.2f}x (vs the same network in full precision)")
    click.echo(f"Search seconds: {result.summary.get('search_seconds', 0.0):.1f}")
    if "retrain_seconds" in result.summary:
        click.echo(f"Retrain seconds: {result.summary['retrain_seconds']:.1f}")
    click.echo(f"Run folder: {result.run_dir}")
    if "mlflow_run_id" in result.announcements:
        click.echo(f"MLflow run id: {result.announcements['mlflow_run_id']}")
        click.echo(f"MLflow tracking URI: {result.announcements.get('mlflow_tracking_uri', '')}")


def _resume(target: str, overrides: tuple[str, ...], uri: str | None, progress: Any,
            allowed: list[str]) -> None:
    from pathlib import Path

    from automl_bin.recipe import parse_recipe, resolve
    from automl_bin.resume import check_recipe_changes, find_resume_point
    from automl_bin.runner import run
    from automl_bin.suite_runner import SUITE_FILE

    if overrides:
        raise UsageError("--resume continues a run with exactly the recipe it started with; "
                         "drop --set (or start a new run with --from-run RUN_ID --set ...).")
    path = Path(target)
    if not path.exists() and "/" not in target and not target.endswith(".pt"):
        from automl_bin.tracking.names import RUN_DIR_TAG
        from automl_bin.tracking.store import open_client, parent_run

        client, uri = open_client(uri)
        folder = parent_run(client, target, uri).data.tags.get(RUN_DIR_TAG)
        if not folder:
            raise UsageError(f"MLflow run {target!r} has no {RUN_DIR_TAG} tag: it is not a run "
                             "or a suite of `automl-bin run`.")
        path = Path(folder)
    if path.is_dir() and (path / SUITE_FILE).is_file():
        _resume_suite(path, progress, allowed)
        return
    _refuse_live_run(path)
    point = check_recipe_changes(find_resume_point(path), allowed)
    recipe = parse_recipe(point.recipe_text, (), source=str(point.run_dir / "recipe.toml"))
    plugins = load_plugins_warned()
    _print_result(run(resolve(recipe, plugins.registry), plugins, progress, resume=point))


def _refuse_live_run(path: Any) -> None:
    """Refuse to resume a run whose process still holds its folder (exit 2, naming the pid);
    a run whose process died is marked KILLED (its folder and tracked runs) and said so.
    Only rank 0 of a data-parallel resume checks: it is the one that takes the lock."""
    from automl_bin.dead_runs import mark_dead_run_killed
    from automl_bin.run_lock import live_run_error, lock_holder

    if int(os.environ.get("RANK", "0")) != 0:
        return
    folder = path.parent if path.is_file() else path
    pid = lock_holder(folder)
    if pid is not None:
        raise live_run_error(folder, pid)
    if folder.is_dir() and mark_dead_run_killed(folder):
        click.echo(f"The run in {folder} had died without ending (no process holds it); it is "
                   "now marked KILLED in its folder and in MLflow.", err=True)


def _resume_suite(folder: Any, progress: Any, allowed: list[str]) -> None:
    """Continue the interrupted suite in ``folder`` (see `automl_bin.suite_runner`)."""
    import attrs

    from automl_bin.suite import parse_plan
    from automl_bin.suite_runner import find_suite_resume, resolve_plan, run_suite

    point = attrs.evolve(find_suite_resume(folder), allowed_changes=tuple(allowed))
    plan = parse_plan(point.recipe_text, (), source=str(folder / "recipe.toml"))
    plugins = load_plugins_warned()
    resolved = resolve_plan(plan, plugins)
    _print_suite(plan, run_suite(plan, resolved, plugins, progress, resume=point))
