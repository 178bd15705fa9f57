"""The plugin author kit end to end: ``new-plugin`` templates, installed beside automl-bin, and
broken third-party plugins that must not take anything else down.

Generated and broken packages are installed with pip into temporary folders put on PYTHONPATH
(exactly how a real installation's entry points are found, without touching the environment);
the installs are shared per module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from importlib import metadata
from pathlib import Path

import pytest
from docs_examples import load_docs_example
from click.testing import CliRunner

from automl_bin.cli.main import AutomlBinGroup
from automl_bin.cli.new_plugin import new_plugin_command, template_values

#: one generated plugin per kind
GENERATED = {"strategy": "my_walk", "binarizer": "my_sign", "search_space": "my_chain"}
GROUP = AutomlBinGroup(commands={"new-plugin": new_plugin_command})


def _new_plugin(*args: str):
    return CliRunner().invoke(GROUP, ["new-plugin", *args])


def _pip_install(target: Path, *projects: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                          "--no-build-isolation", "--no-index", "--target", str(target),
                          *map(str, projects)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


def _run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", ""))
                                         if p)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def _pytest_plugin_args() -> list[str]:
    """``-p automl_bin.testing.pytest_plugin`` unless the pytest11 entry point already loads it
    (loading it twice is an error)."""
    registered = any(ep.value == "automl_bin.testing.pytest_plugin"
                     for ep in metadata.entry_points(group="pytest11"))
    return [] if registered else ["-p", "automl_bin.testing.pytest_plugin"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generated")
    out = {}
    for kind, name in GENERATED.items():
        result = _new_plugin(name, "--kind", kind, "--dir", str(root / name))
        assert result.exit_code == 0, result.output
        out[kind] = root / name
    return out


@pytest.fixture(scope="module")
def site(generated, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    _pip_install(target, *generated.values())
    return target


# --------------------------------------------------------------------------------------------
# new-plugin
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(GENERATED))
def test_new_plugin_renders_a_complete_project(generated, kind):
    name = GENERATED[kind]
    values = template_values(name, kind)
    root = generated[kind]
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert {"pyproject.toml", "README.md", f"{values['package']}/__init__.py",
            f"{values['package']}/plugin.py", f"recipes/{name}_synthetic.toml",
            f"tests/test_{name}.py"} <= set(files)
    for rel in files:
        text = (root / rel).read_text(encoding="utf-8")
        assert "{{" not in text, rel
        if rel.endswith(".py"):
            compile(text, rel, "exec")
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    assert f'name = "{values["dist"]}"' in pyproject
    assert f'{values["package"]} = "{values["package"]}.plugin"' in pyproject


def test_new_plugin_prints_next_steps(tmp_path):
    result = _new_plugin("hop", "--kind", "strategy", "--dir", str(tmp_path / "hop"))
    assert result.exit_code == 0, result.output
    assert f"pip install -e {tmp_path / 'hop'}" in result.output
    assert f"pytest {tmp_path / 'hop' / 'tests'}" in result.output
    assert f"automl-bin run {tmp_path / 'hop' / 'recipes' / 'hop_synthetic.toml'}" in result.output


def test_new_plugin_default_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(GROUP, ["new-plugin", "my_hop"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "automl-bin-my-hop" / "automl_bin_my_hop" / "plugin.py").is_file()


def test_new_plugin_refuses_to_overwrite_and_bad_names(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result = _new_plugin("hop", "--dir", str(tmp_path / "taken"))
    assert result.exit_code == 2 and "already exists" in result.output
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    for bad in ("My-Walk", "1walk", "walk!"):
        result = _new_plugin(bad, "--dir", str(tmp_path / "x"))
        assert result.exit_code == 2 and "is not valid" in result.output, bad
    result = _new_plugin("darts", "--kind", "strategy", "--dir", str(tmp_path / "x"))
    assert result.exit_code == 2 and "already has a built-in strategy called 'darts'" in result.output
    result = _new_plugin("hop", "--kind", "estimator", "--dir", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert not (tmp_path / "x").exists()


def test_automl_bin_cli_has_new_plugin(tmp_path):
    out = subprocess.run([sys.executable, "-m", "automl_bin", "new-plugin", "hop", "--kind",
                          "binarizer"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "automl-bin-hop" / "automl_bin_hop" / "modules.py").is_file()


# --------------------------------------------------------------------------------------------
# generated plugins, installed
# --------------------------------------------------------------------------------------------


def test_plugins_lists_generated_plugins_with_their_distributions(site, tmp_path):
    out = _run(site, "-m", "automl_bin", "plugins", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert not listing["problems"]
    rows = {(r["kind"], r["name"]): r for r in listing["components"]}
    for kind, name in GENERATED.items():
        row = rows[(kind, name)]
        assert row["distribution"] == template_values(name, kind)["dist"]
        assert row["version"] == "0.1.0"


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(GENERATED))
def test_generated_project_tests_pass(site, generated, kind, tmp_path):
    """The first test of a new plugin passes: installed, conforming, its recipe runs."""
    out = _run(site, "-m", "pytest", str(generated[kind] / "tests"), "-q", "-p",
               "no:cacheprovider", *_pytest_plugin_args(), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "passed" in out.stdout and "failed" not in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(GENERATED))
def test_generated_recipe_runs_from_the_cli(site, generated, kind, tmp_path):
    name = GENERATED[kind]
    recipe = generated[kind] / "recipes" / f"{name}_synthetic.toml"
    out = _run(site, "-m", "automl_bin", "run", str(recipe), "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "Genotype: Genotype<" in out.stdout and "test_acc:" in out.stdout
    assert "MLflow run id:" in out.stdout


# --------------------------------------------------------------------------------------------
# broken third-party plugins
# --------------------------------------------------------------------------------------------

BROKEN = {
    # fails to import
    "automl-bin-broken-import": """
        import automl_bin_a_dependency_that_is_not_installed  # noqa: F401
    """,
    # a registration hook raises
    "automl-bin-broken-hook": """
        from automl_bin import hookimpl

        @hookimpl
        def register_strategies(register):
            raise RuntimeError("the plugin's own bug")
    """,
    # registers something that is not a Strategy, a bad name, and returns a value from a hook
    "automl-bin-broken-type": """
        from automl_bin import hookimpl

        class NotAStrategy:
            pass

        @hookimpl
        def register_strategies(register):
            register("not_a_strategy", NotAStrategy)

        @hookimpl
        def register_estimators(register):
            return "registration hooks must return nothing"

        @hookimpl
        def register_binarizers(register):
            register("Bad-Name", NotAStrategy)
    """,
    # loads fine, but its lifecycle hooks raise during every run
    "automl-bin-broken-observer": """
        from automl_bin import hookimpl

        @hookimpl
        def on_run_start(run):
            raise RuntimeError("observer bug at run start")

        @hookimpl
        def on_epoch_end(run, phase, epoch, metrics):
            raise ValueError("observer bug at epoch end")
    """,
}
#: the broken distributions `automl-bin plugins` must name
BROKEN_AT_LOAD = ("automl-bin-broken-import", "automl-bin-broken-hook", "automl-bin-broken-type")


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("broken")
    projects = []
    for dist, body in BROKEN.items():
        package = dist.replace("-", "_")
        project = root / dist
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text("")
        (project / package / "plugin.py").write_text(textwrap.dedent(body))
        (project / "pyproject.toml").write_text(textwrap.dedent(f"""
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "0.0.1"

            [project.entry-points.automl_bin]
            {package} = "{package}.plugin"

            [tool.setuptools]
            packages = ["{package}"]
        """))
        projects.append(project)
    target = tmp_path_factory.mktemp("site2")
    _pip_install(target, *projects)
    return target


def test_plugins_command_survives_broken_plugins(broken_site, tmp_path):
    out = _run(broken_site, "-m", "automl_bin", "plugins", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for builtin in ("darts", "random", "xnor", "recon", "synthetic", "retrain"):
        assert builtin in out.stdout
    assert "not_a_strategy" not in out.stdout
    for dist in BROKEN_AT_LOAD:
        assert dist in out.stderr, (dist, out.stderr)
    assert "automl_bin_a_dependency_that_is_not_installed" in out.stderr
    assert "the plugin's own bug" in out.stderr
    assert "not a subclass of automl_bin.interfaces.Strategy" in out.stderr

    out = _run(broken_site, "-m", "automl_bin", "plugins", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    problems = json.loads(out.stdout)["problems"]
    assert set(BROKEN_AT_LOAD) <= {p["distribution"] for p in problems}


def test_disabling_a_broken_distribution_silences_it(broken_site, tmp_path):
    env_var = ",".join(BROKEN_AT_LOAD)
    out = subprocess.run([sys.executable, "-m", "automl_bin", "plugins"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(broken_site),
                              "AUTOML_BIN_DISABLE_PLUGINS": env_var})
    assert out.returncode == 0 and "Broken plugin" not in out.stderr, out.stderr


@pytest.mark.slow
def test_recipe_that_does_not_use_broken_plugins_runs(broken_site, tmp_path):
    from automl_bin.testing import tiny_recipe_text

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(tiny_recipe_text("darts", tracking=False))
    out = _run(broken_site, "-m", "automl_bin", "run", str(recipe), "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "Genotype: Genotype<darts>" in out.stdout
    for dist in (*BROKEN_AT_LOAD, "automl-bin-broken-observer"):
        assert dist in out.stderr, (dist, out.stderr[-4000:])
    assert "observer bug at run start" in out.stderr


def test_recipe_naming_a_broken_component_fails_clearly(broken_site, tmp_path):
    from automl_bin.testing import tiny_recipe_text

    recipe = tmp_path / "broken.toml"
    recipe.write_text(tiny_recipe_text("not_a_strategy", tracking=False))
    out = _run(broken_site, "-m", "automl_bin", "check", str(recipe), cwd=tmp_path)
    assert out.returncode == 2
    assert "Unknown strategy 'not_a_strategy'" in out.stderr
    assert "automl-bin-broken-type" in out.stderr


# --------------------------------------------------------------------------------------------
# docs/plugins.md "Writing a one-shot strategy": its example, run
# --------------------------------------------------------------------------------------------

def _docs_one_shot() -> types.ModuleType:
    """The one-shot example of docs/plugins.md, as a module."""
    return load_docs_example("one-shot", "first_order")


def test_docs_one_shot_example_conforms_and_runs_from_a_recipe(tmp_path):
    from automl_bin.testing import check_strategy, make_plugins, run_recipe, tiny_recipe_text

    module = _docs_one_shot()
    check_strategy(module.FirstOrderDarts)
    plugins = make_plugins(("first_order", module))  # through its register_strategies hook
    assert plugins.registry.get("strategy", "first_order").cls is module.FirstOrderDarts
    result = run_recipe(tmp_path, tiny_recipe_text("first_order", plugins=plugins),
                        ["strategy.max_steps=3"], plugins=plugins)
    # what the base logs for it: meters, step means, the image count, val, entropy, lr
    for key in ("train_loss", "train_acc", "arch_loss", "val_loss", "val_acc", "alpha_entropy",
                "lr", "alpha_margin"):
        assert len(result.metrics("search", key)) == 2, key
    # per epoch 3 steps x 16 images, counted since the search began (then logged once more as
    # the search's total)
    assert result.metrics("search", "weight_images")[:2] == [48.0, 96.0]
    assert result.metrics("retrain", "test_acc")


def test_docs_one_shot_example_searches_as_first_order_darts(tmp_path):
    """Same seed, same data: the 40-line example and the built-in darts (order 1) take the same
    steps, so the base adds nothing a strategy must write itself."""
    import torch

    from automl_bin.testing import make_plugins, tiny_search_env

    docs = _docs_one_shot().FirstOrderDarts
    darts = make_plugins().registry.get("strategy", "darts").cls
    runs = []
    for cls, config in ((docs, docs.Config(epochs=2, max_steps=3)),
                        (darts, darts.Config(epochs=2, max_steps=3, order=1))):
        strategy = cls(config)
        torch.manual_seed(0)
        strategy.setup(tiny_search_env(tmp_path / cls.__name__))
        metrics = [strategy.run_epoch(epoch) for epoch in range(2)]
        runs.append((metrics, strategy.op_weights(), strategy.derive()))
    (m1, w1, g1), (m2, w2, g2) = runs
    assert m1 == m2
    assert all(torch.equal(w1[k], w2[k]) for k in w2) and w1.keys() == w2.keys()
    assert g1 == g2
