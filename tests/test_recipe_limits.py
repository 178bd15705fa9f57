"""Hostile recipes: experiment names that would leave output_dir and TOML nested absurdly deep
are refused by `check` (exit 2, one paragraph) before anything runs (issue 19 item 8)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from automl_bin.cli import cli
from automl_bin.errors import UsageError
from automl_bin.recipe import MAX_NESTING, parse_recipe

BASE = """
[data]
name = "synthetic"
[strategy]
name = "darts"
epochs = 2
"""


def _check(tmp_path, text: str, *overrides: str):
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    args = ["check", str(path)]
    for item in overrides:
        args += ["--set", item]
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize("name", ["../../escape", "/tmp/elsewhere", "two\nlines", "a" * 300,
                                  ".hidden", "", "sp ace"])
def test_check_refuses_unsafe_experiment_names(tmp_path, name):
    result = _check(tmp_path, BASE + f"[experiment]\nname = {name!r}\n".replace("'", '"'))
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())  # the CLI wraps lines
    assert "experiment name" in out
    assert "1 to 100 characters of letters, digits" in out and "output_dir instead" in out
    assert "Traceback" not in out and "\n\n" not in result.output.strip()
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("name", ["darts-fmnist", "run_1.v2", "a" * 100, "9lives"])
def test_safe_experiment_names_pass(name):
    assert parse_recipe(BASE, [f'experiment.name="{name}"']).experiment.name == name


def test_name_is_checked_for_set_overrides_too(tmp_path):
    result = _check(tmp_path, BASE, 'experiment.name="../up"')
    assert result.exit_code == 2 and "experiment name" in result.output


@pytest.mark.parametrize("nested", [
    "x = " + "[" * 100_000 + "]" * 100_000,                  # RecursionError in tomllib
    ".".join(["k"] * 100_000) + " = 1",                      # quadratic time in tomllib
    "x = " + "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1),  # parses, but too deep
])
def test_check_refuses_absurd_nesting(tmp_path, nested):
    result = _check(tmp_path, BASE + nested + "\n")
    assert result.exit_code == 2, result.output[:300]
    assert f"more than {MAX_NESTING} levels deep" in " ".join(result.output.split())
    assert "RecursionError" not in result.output and "Traceback" not in result.output


def test_deep_set_key_and_value_are_refused():
    with pytest.raises(UsageError, match="levels deep"):
        parse_recipe(BASE, ["strategy." + ".".join(["k"] * 100) + "=1"])
    with pytest.raises(UsageError, match="levels deep"):
        parse_recipe(BASE, ["strategy.k=" + "[" * 5000 + "]" * 5000])


def test_floats_and_dotted_strings_are_not_nesting():
    many = ", ".join(["0.5"] * 200)
    recipe = parse_recipe(BASE + f'note = "{".".join(["a"] * 200)}"\nvalues = [{many}]\n')
    assert len(recipe.strategy.params["values"]) == 200
