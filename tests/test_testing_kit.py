"""The test kit's factories: ``tiny_search_env`` builds a `SearchEnv`, and passing the factory
itself where the environment belongs fails with an error that names the fix."""

from __future__ import annotations

import inspect

import pytest

from automl_bin.interfaces import SearchEnv
from automl_bin.testing import tiny_search_env
from automl_bin_plugins.strategies.darts import DartsStrategy
from automl_bin_plugins.strategies.cp_nas import CpNasStrategy


def test_the_factory_builds_a_search_env(tmp_path):
    env = tiny_search_env(tmp_path, binarizer="xnor")
    assert isinstance(env, SearchEnv)
    assert env.binarizer.weight_bits == 1
    # the wrapper keeps the documented signature for help() and editors
    assert "binarizer" in inspect.signature(tiny_search_env).parameters


@pytest.mark.parametrize("strategy_cls", [DartsStrategy, CpNasStrategy])
def test_passing_the_factory_to_setup_names_the_fix(strategy_cls):
    with pytest.raises(TypeError) as info:
        strategy_cls().setup(tiny_search_env)
    message = str(info.value)
    assert "tiny_search_env factory itself" in message
    assert "env = tiny_search_env()" in message and "strategy.setup(env)" in message
    assert "\n" not in message


def test_the_fixture_is_the_same_kind_of_factory(tiny_search_env):
    env = tiny_search_env()
    assert isinstance(env, SearchEnv)
    assert env.reporter.work_dir.name == "search"  # the fixture writes under the test's tmp_path
    with pytest.raises(TypeError, match=r"call it and pass the result"):
        DartsStrategy().setup(tiny_search_env)


def test_other_missing_attributes_stay_attribute_errors():
    assert not hasattr(tiny_search_env, "no_such_attribute")
    assert getattr(tiny_search_env, "__wrapped__").__name__ == "_tiny_search_env"
