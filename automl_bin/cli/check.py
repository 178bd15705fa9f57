"""``automl-bin check RECIPE``: validate a recipe (or every run of a suite) without running it."""

from __future__ import annotations

import click

from automl_bin.cli.common import load_plugins_warned, set_option
from automl_bin.recipe import ResolvedRecipe


def _describe(resolved: ResolvedRecipe) -> str:
    r = resolved.recipe
    # the epoch count of some strategies is known only after setup (e.g. pruning schedules)
    epochs = getattr(resolved.strategy.config, "epochs", None)
    budget = f" ({epochs} epochs)" if isinstance(epochs, int) else ""
    return (f"data={r.data.name}, search_space={r.search_space.name}, "
            f"binarizer={r.binarizer.name}, strategy={r.strategy.name}{budget}, "
            f"retrain={'on' if resolved.retrain_estimator else 'off'}")


@click.command("check", epilog="""\b
Examples:
  automl-bin check recipes/quickstart.toml
  automl-bin check recipes/darts_cifar.toml --set strategy.order=2
  automl-bin check recipes/table43_fmnist.toml --set experiment.seeds=1
""")
@click.argument("recipe", type=click.Path(dir_okay=False))
@set_option
def check_command(recipe: str, overrides: tuple[str, ...]) -> None:
    """Validate RECIPE: sections, keys, types, ranges and plugin names. Loads no data.

    For a suite or sweep, every run it expands to is validated and listed.
    """
    from automl_bin.suite import load_plan
    from automl_bin.suite_runner import resolve_plan

    plan = load_plan(recipe, overrides)
    resolved = resolve_plan(plan, load_plugins_warned())
    if not plan.is_suite:
        click.echo(f"OK: {recipe} — {_describe(resolved[0])}")
        return
    click.echo(f"OK: {recipe} — a suite of {len(plan.members)} runs")
    for member, rec in zip(plan.members, resolved):
        click.echo(f"  {member.name}: {_describe(rec)}")
