"""Helpers shared by commands: loading plugins and recipes with their errors."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import click

from automl_bin.plugins import PluginSet, load_plugins
from automl_bin.recipe import ResolvedRecipe, load_recipe, resolve

__all__ = ["set_option", "load_and_resolve", "load_plugins_warned", "warn_problems"]

set_option = click.option(
    "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
    help="Override a recipe key (repeatable); VALUE is parsed as TOML, e.g. --set strategy.epochs=3.")


def warn_problems(plugins: PluginSet) -> None:
    for problem in plugins.registry.problems:
        click.echo(f"Warning: {problem}", err=True)


def load_plugins_warned() -> PluginSet:
    """Every installed plugin; problems of broken ones are printed as warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        plugins = load_plugins()
    warn_problems(plugins)
    return plugins


def load_and_resolve(path: str, overrides: Sequence[str]) -> tuple[ResolvedRecipe, PluginSet]:
    recipe = load_recipe(path, overrides)
    plugins = load_plugins_warned()
    return resolve(recipe, plugins.registry), plugins
