"""The ``darts`` cell search space plugin (docs/algorithms.md §DARTS cell search space)."""

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin_plugins.darts_space.space import DartsSpace


@hookimpl
def register_search_spaces(register: Register) -> None:
    register("darts", DartsSpace)
