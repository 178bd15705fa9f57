"""``automl-bin check RECIPE``: validate a recipe without running it."""

from __future__ import annotations

import click

from automl_bin.cli.common import load_and_resolve, set_option


@click.command("check", epilog="""\b
Examples:
  automl-bin check recipes/quickstart.toml
  automl-bin check recipes/darts_cifar.toml --set strategy.order=2
""")
@click.argument("recipe", type=click.Path(dir_okay=False))
@set_option
def check_command(recipe: str, overrides: tuple[str, ...]) -> None:
    """Validate RECIPE: sections, keys, types, ranges and plugin names. Loads no data."""
    resolved, _ = load_and_resolve(recipe, overrides)
    r = resolved.recipe
    # the epoch count of some strategies is known only after setup (e.g. pruning schedules)
    epochs = getattr(resolved.strategy.config, "epochs", None)
    budget = f" ({epochs} epochs)" if isinstance(epochs, int) else ""
    click.echo(
        f"OK: {recipe} — data={r.data.name}, search_space={r.search_space.name}, "
        f"binarizer={r.binarizer.name}, strategy={r.strategy.name}{budget}, "
        f"retrain={'on' if resolved.retrain_estimator else 'off'}"
    )
