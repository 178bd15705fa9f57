"""``automl-bin run RECIPE``: search, retrain and track one experiment."""

from __future__ import annotations

import click

from automl_bin.cli.common import load_and_resolve, set_option


@click.command("run", epilog="""\b
Examples:
  automl-bin run recipes/quickstart.toml
  automl-bin run recipes/quickstart.toml --set strategy.epochs=1 --set retrain.epochs=1
  automl-bin run recipes/darts_cifar.toml --set data.download=true
""")
@click.argument("recipe", type=click.Path(dir_okay=False))
@set_option
@click.option("--quiet", is_flag=True, help="Print only the final result.")
@click.option("--plain", is_flag=True, help="Log lines instead of progress bars.")
def run_command(recipe: str, overrides: tuple[str, ...], quiet: bool, plain: bool) -> None:
    """Run RECIPE: search, derive the genotype, retrain it and report test accuracy.

    Every run writes a new folder under [experiment] output_dir and is tracked in MLflow
    (see `automl-bin ui`). Ctrl-C stops it cleanly: the run is marked KILLED and the last
    checkpoint is kept.
    """
    from automl_bin.progress import Progress
    from automl_bin.runner import run

    resolved, plugins = load_and_resolve(recipe, overrides)
    result = run(resolved, plugins, Progress(enabled=not quiet, force_plain=plain))
    click.echo(f"Genotype: {result.genotype}")
    for key in ("test_acc", "params", "model_bits", "param_bits", "flops", "bops", "ops",
                "deployed_bytes",
                "training_bytes"):
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
