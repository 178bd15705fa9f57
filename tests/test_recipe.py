"""Recipe loading and validation: every error kind is one clear UsageError."""

from __future__ import annotations

import pytest

from automl_bin.errors import UsageError
from automl_bin.recipe import flatten, load_recipe, parse_recipe, resolve

BASE = """
[data]
name = "synthetic"
[strategy]
name = "darts"
epochs = 2
"""


def test_defaults_and_plugin_configs(plugins):
    """A minimal recipe resolves; plugin keys land in the plugin's Config."""
    resolved = resolve(parse_recipe(BASE), plugins.registry)
    assert resolved.strategy.config.epochs == 2
    assert resolved.strategy.config.order == 1
    assert resolved.search_space.config.layers == 8
    assert resolved.recipe.binarizer.name == "none"
    assert resolved.retrain_estimator.config.epochs == 600


def test_unknown_section_suggests():
    with pytest.raises(UsageError, match=r"Unknown recipe section \[stratgy\].*Did you mean 'strategy'"):
        parse_recipe(BASE + "\n[stratgy]\nname='x'\n")


def test_unknown_plugin_key_suggests(plugins):
    recipe = parse_recipe(BASE.replace("epochs = 2", "epocs = 2"))
    with pytest.raises(UsageError) as err:
        resolve(recipe, plugins.registry)
    msg = str(err.value)
    assert "strategy.epocs" in msg and "Did you mean 'epochs'" in msg and "\n" not in msg


def test_unknown_core_key_suggests():
    with pytest.raises(UsageError, match=r"experiment\.sed.*Did you mean 'seed'"):
        parse_recipe(BASE + "[experiment]\nsed = 1\n")


def test_wrong_type_names_key_value_and_expectation(plugins):
    recipe = parse_recipe(BASE.replace("epochs = 2", 'epochs = "two"'))
    with pytest.raises(UsageError, match=r"'strategy\.epochs' has the value 'two' \(str\).*an integer"):
        resolve(recipe, plugins.registry)
    with pytest.raises(UsageError, match=r"data\.batch_size"):
        parse_recipe(BASE.replace('name = "synthetic"', 'name = "synthetic"\nbatch_size = 1.5'))


def test_out_of_range(plugins):
    with pytest.raises(UsageError, match=r"train_portion.*between 0 and 1"):
        parse_recipe(BASE + "", overrides=["data.train_portion=1.5"])
    recipe = parse_recipe(BASE, overrides=["strategy.epochs=0"])
    with pytest.raises(UsageError, match=r"\[strategy\].*epochs"):
        resolve(recipe, plugins.registry)


def test_literal_choices(plugins):
    recipe = parse_recipe(BASE, overrides=["strategy.order=3"])
    with pytest.raises(UsageError, match=r"strategy\.order.*one of 1, 2"):
        resolve(recipe, plugins.registry)


def test_unknown_strategy_lists_known(plugins):
    recipe = parse_recipe(BASE.replace('name = "darts"', 'name = "dart"'))
    with pytest.raises(UsageError) as err:
        resolve(recipe, plugins.registry)
    msg = str(err.value)
    assert "Unknown strategy 'dart'" in msg and "Did you mean 'darts'" in msg
    assert "darts, random" in msg and "automl-bin plugins" in msg


def test_unknown_dataset_and_space(plugins):
    with pytest.raises(UsageError, match="Known datasets: cifar10, fashion_mnist, synthetic"):
        resolve(parse_recipe(BASE.replace("synthetic", "mnist")), plugins.registry)
    with pytest.raises(UsageError, match="Unknown search space 'nas'"):
        resolve(parse_recipe(BASE + "[search_space]\nname='nas'\n"), plugins.registry)


def test_overrides_parse_toml_values_and_nested_keys(plugins):
    recipe = parse_recipe(BASE, overrides=["strategy.lr=0.1", "retrain.network.layers=3",
                                           "experiment.name=hello", "strategy.order=2"])
    assert recipe.raw["strategy"]["lr"] == 0.1
    assert recipe.retrain.network == {"layers": 3}
    assert recipe.experiment.name == "hello"
    resolved = resolve(recipe, plugins.registry)
    assert resolved.network.layers == 3 and resolved.strategy.config.order == 2


def test_bad_override_syntax():
    with pytest.raises(UsageError, match="section.key=value"):
        parse_recipe(BASE, overrides=["strategy.epochs"])
    with pytest.raises(UsageError, match="must name a section and a key"):
        parse_recipe(BASE, overrides=["epochs=3"])


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(UsageError, match="not valid TOML"):
        parse_recipe("[data\nname=1")
    with pytest.raises(UsageError, match="does not exist"):
        load_recipe(tmp_path / "nope.toml")
    with pytest.raises(UsageError, match=r"no \[strategy\] name"):
        parse_recipe("[data]\nname='synthetic'\n")


def test_network_keys_validated_by_the_space(plugins):
    recipe = parse_recipe(BASE + "[retrain]\nnetwork = { layer = 3 }\n")
    with pytest.raises(UsageError, match=r"retrain\.network\.layer.*Did you mean 'layers'"):
        resolve(recipe, plugins.registry)


def test_flatten_and_sha():
    recipe = parse_recipe(BASE)
    flat = flatten(recipe.raw)
    assert flat["strategy.epochs"] == "2"
    assert len(recipe.sha256) == 64
    assert parse_recipe(BASE).sha256 == recipe.sha256
