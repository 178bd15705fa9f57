"""Meta-tests: the plugin API stays documented, tested and demonstrated.

- every hook appears in docs/plugins.md with its exact signature;
- every hook is exercised by at least one test file;
- every built-in component is used by at least one shipped recipe.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from automl_bin.plugins import hook_signatures, load_plugins

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins.md"
TESTS = Path(__file__).resolve().parent
HOOKS = sorted(hook_signatures())


def _normalise(text: str) -> str:
    """String annotations are quoted in signatures, table cells escape ``|``: drop both."""
    return text.replace("'", "").replace('"', "").replace("\\|", "|")


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_exact_signature(hook):
    signature = _normalise(hook_signatures()[hook])
    assert signature.startswith(f"{hook}(")
    assert signature in _normalise(DOCS.read_text(encoding="utf-8")), (
        f"docs/plugins.md must show {signature}")


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook):
    files = [p for p in TESTS.rglob("test_*.py") if p.name != Path(__file__).name]
    using = [p.name for p in files if hook in p.read_text(encoding="utf-8")]
    assert using, f"no test file under tests/ exercises the hook {hook}"


def _recipe_names() -> dict[str, set[str]]:
    """kind -> names used by the shipped recipes, through the key that names each kind."""
    used: dict[str, set[str]] = {"search_space": set(), "binarizer": set(), "strategy": set(),
                                 "estimator": set(), "dataset": set()}
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        for kind, section in (("search_space", "search_space"), ("binarizer", "binarizer"),
                              ("strategy", "strategy"), ("dataset", "data")):
            name = raw.get(section, {}).get("name")
            if isinstance(name, str):
                used[kind].add(name)
        if raw.get("reference", {}).get("random_genotypes"):  # expands into its members
            used["strategy"].add("random_genotype")
        for section, key in (("retrain", "estimator"), ("strategy", "estimator")):
            name = raw.get(section, {}).get(key)
            if isinstance(name, str):
                used["estimator"].add(name)
    return used


BUILTINS = [e for e in load_plugins(allow={"automl-bin"}, deny=set()).registry
            if e.distribution == "automl-bin"]


@pytest.mark.parametrize("entry", BUILTINS, ids=[f"{e.kind}-{e.name}" for e in BUILTINS])
def test_builtin_component_has_a_recipe(entry):
    used = _recipe_names()[entry.kind]
    assert entry.name in used, (
        f"no recipe in recipes/ uses the built-in {entry.kind} {entry.name!r}; recipes use "
        f"{sorted(used)}")
