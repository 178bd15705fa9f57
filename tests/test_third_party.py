"""A third-party plugin package (tests/third_party_plugin) installed beside automl-bin.

It is installed with pip into a temporary folder on PYTHONPATH, so its entry point is
discovered exactly as a real installation's would be, without touching the environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parent / "third_party_plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(target), str(PLUGIN)],
                   check=True, capture_output=True, text=True, timeout=300)
    return target


def _cli(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "automl_bin", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def test_plugins_lists_third_party_strategy_with_its_distribution(site):
    out = _cli(site, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["components"]
    hill = [r for r in rows if r["name"] == "hillclimb"]
    assert hill and hill[0]["kind"] == "strategy"
    assert hill[0]["distribution"] == "automl-bin-hillclimb" and hill[0]["version"] == "0.3.0"


def test_recipe_runs_third_party_strategy(site, tmp_path, tiny_recipe):
    text = tiny_recipe(strategy="hillclimb", name="third", tracking=False)
    text = text.replace("epochs = 2\nmax_steps = 2", "epochs = 2\nsteps_per_epoch = 2")
    path = tmp_path / "hill.toml"
    path.write_text(text)
    out = _cli(site, "run", str(path), "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "Genotype: Genotype<darts>" in out.stdout


def test_disable_and_allow_list(site):
    env_off = _cli_env(site, AUTOML_BIN_DISABLE_PLUGINS="automl-bin-hillclimb")
    assert "hillclimb" not in env_off
    env_only = _cli_env(site, AUTOML_BIN_PLUGINS="automl-bin")
    assert "hillclimb" not in env_only and "darts" in env_only


def _cli_env(site: Path, **extra: str) -> str:
    env = {**os.environ, **extra,
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "automl_bin", "plugins"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_recipe_chooses_third_party_binarizer(site, tmp_path, tiny_recipe):
    """A binarizer from another distribution binarizes the binary op set with no core change."""
    text = tiny_recipe(name="sign", tracking=False)
    text = text.replace('[search_space]\nname = "darts"', '[search_space]\nname = "darts"\nops = "binary"')
    text = text.replace("[strategy]", '[binarizer]\nname = "plain_sign"\nclip = 1.5\n\n[strategy]')
    path = tmp_path / "sign.toml"
    path.write_text(text)
    out = _cli(site, "run", str(path), "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "model_bits" in out.stdout and "memory_saving" in out.stdout
    listed = _cli(site, "plugins")
    assert "plain_sign" in listed.stdout and "automl-bin-hillclimb" in listed.stdout
