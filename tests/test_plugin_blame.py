"""A plugin that raises during a run is named, with its distribution, in the CLI's message and
in the run's recorded error (issue 19 item 12, last sentence)."""

from __future__ import annotations

import json

from click.testing import CliRunner

import automl_bin.cli.run as cli_run
from automl_bin.cli import cli
from automl_bin.testing import make_plugins, tiny_recipe_text


def _exploding_plugins():
    darts = make_plugins().registry.get("strategy", "darts").cls

    class ExplodingSetup(darts):
        def setup(self, env):
            raise ValueError("no supernet for you")

    return make_plugins(("exploding", ExplodingSetup))


def test_failing_strategy_is_named_with_its_distribution(tmp_path, monkeypatch):
    plugins = _exploding_plugins()
    entry = plugins.registry.get("strategy", "exploding")
    monkeypatch.setattr(cli_run, "load_plugins_warned", lambda: plugins)
    monkeypatch.delenv("AUTOML_BIN_DEBUG", raising=False)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(tiny_recipe_text("exploding", tracking=False, plugins=plugins))
    result = CliRunner().invoke(cli, ["run", str(recipe), "--quiet",
                                      "--set", f'experiment.output_dir="{tmp_path / "runs"}"'])
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    named = (f"Raised by strategy 'exploding' (plugin {entry.plugin!r}, distribution "
             f"{entry.distribution}")
    assert "ValueError: no supernet for you." in out and named in out, out
    assert "Traceback" not in out
    (summary,) = (tmp_path / "runs").glob("*/*/summary.json")
    recorded = json.loads(summary.read_text())
    assert recorded["status"] == "FAILED" and named in recorded["error"]


def test_core_failures_name_no_plugin():
    plugins = make_plugins()
    try:
        raise RuntimeError("core bug")
    except RuntimeError as exc:
        message = plugins.registry.failure_message(exc, [object()])
    assert message == "RuntimeError: core bug"
