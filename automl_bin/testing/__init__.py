"""Test kit for automl-bin plugin authors (and for automl-bin's own tests).

Everything here works with plain function calls; the same helpers are also pytest fixtures
(`automl_bin.testing.pytest_plugin`, registered through the ``pytest11`` entry point, so they
are available in every test session once automl-bin is installed):

- `make_plugins` (fixture ``plugin_set``): a fresh plugin set with only the built-ins plus the
  plugins you pass (a module, a ``(name, module)`` pair, a ``(name, ComponentClass)`` pair or an
  installed distribution name).
- `tiny_space`, `tiny_data`, `tiny_splits`, `tiny_search_env` (fixture ``tiny_search_env``),
  `tiny_estimation_env`, `RecordingReporter` and `FakeEstimator`: seconds-sized components.
- `tiny_recipe_text` (fixture ``tiny_recipe_text``): the TOML of a seconds-long recipe on
  synthetic data, for any strategy, binarizer or search space.
- `run_recipe` (fixture ``run_recipe``): run a recipe end to end, tracked in a throw-away MLflow
  store, and read back the tracked runs, metric histories and artifacts (`RecipeRun`).
- `check_strategy`, `check_binarizer`, `check_search_space`: the conformance suite every
  built-in passes; call them from your own tests.

Importing this package is cheap and never imports torch: names are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ConformanceReport",
    "FakeEstimator",
    "RecipeRun",
    "RecordingReporter",
    "check_binarizer",
    "check_search_space",
    "check_strategy",
    "make_plugins",
    "run_recipe",
    "shrink_config",
    "tiny_data",
    "tiny_estimation_env",
    "tiny_network",
    "tiny_recipe_text",
    "tiny_search_env",
    "tiny_space",
    "tiny_splits",
]

_HOME = {
    "ConformanceReport": "conformance",
    "check_binarizer": "conformance",
    "check_search_space": "conformance",
    "check_strategy": "conformance",
}


def __getattr__(name: str) -> Any:
    if name in __all__:
        module = importlib.import_module(f"automl_bin.testing.{_HOME.get(name, 'fixtures')}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
