"""pytest fixtures of the automl-bin test kit (the ``pytest11`` entry point ``automl_bin``).

Installed with automl-bin, this plugin is loaded in every pytest session, so it only defines
fixtures: importing it imports neither torch nor MLflow, and fixtures nobody requests cost
nothing. Run a session without it with ``pytest -p no:automl_bin``.

Fixtures (each returns a function, so a test can call it with the arguments it needs):

- ``plugin_set(*plugins, installed=False)``: a fresh `PluginSet` with only the built-ins plus
  ``plugins`` (see `automl_bin.testing.make_plugins`).
- ``tiny_search_env(**kwargs)``: a factory; each call returns a `SearchEnv` on the tiny
  synthetic data whose reporter records into the test's ``tmp_path`` (see
  `automl_bin.testing.tiny_search_env`).
- ``tiny_recipe_text(strategy="darts", **kwargs)``: the TOML of a seconds-long recipe.
- ``run_recipe(toml_text, overrides=(), plugins=None)``: run it, tracked in the test's
  ``tmp_path``, and return a `automl_bin.testing.RecipeRun`.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(name="plugin_set")
def _plugin_set() -> Any:
    """``plugin_set(*plugins, installed=False)``: a fresh plugin set (built-ins + ``plugins``)."""
    from automl_bin.testing.fixtures import make_plugins

    return make_plugins


@pytest.fixture(name="tiny_search_env")
def _tiny_search_env(tmp_path: Any) -> Any:
    """``tiny_search_env(space=None, binarizer="none", estimator=None, seed=0, ...)``: a factory.

    Call it for a `SearchEnv`; passing the factory itself to ``setup`` raises a TypeError
    naming the fix (`automl_bin.testing.fixtures.SearchEnvFactory`).
    """
    from automl_bin.testing.fixtures import SearchEnvFactory, tiny_search_env

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("work_dir", tmp_path / "search")
        return tiny_search_env(**kwargs)

    return SearchEnvFactory(make)


@pytest.fixture(name="tiny_recipe_text")
def _tiny_recipe_text() -> Any:
    """``tiny_recipe_text(strategy="darts", *, search_space="darts", binarizer="none", ...)``."""
    from automl_bin.testing.fixtures import tiny_recipe_text

    return tiny_recipe_text


@pytest.fixture(name="run_recipe")
def _run_recipe(tmp_path: Any) -> Any:
    """``run_recipe(toml_text, overrides=(), *, plugins=None)`` -> `RecipeRun`, in tmp_path."""
    from automl_bin.testing.fixtures import run_recipe

    def run(toml_text: str, overrides: Any = (), **kwargs: Any) -> Any:
        return run_recipe(tmp_path, toml_text, overrides, **kwargs)

    return run
