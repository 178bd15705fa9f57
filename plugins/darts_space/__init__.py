"""The ``darts`` cell search space plugin (spec §1)."""

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin_plugins.darts_space.space import DartsSpace


@hookimpl
def register_search_spaces(register: Register) -> None:
    register("darts", DartsSpace)
