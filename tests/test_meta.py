"""Meta-tests: the plugin API stays documented, tested and demonstrated.

- every hook appears in docs/plugins.md with its exact signature;
- every hook is exercised by at least one test file;
- every built-in component is used by at least one shipped recipe;
- every public member of the `Strategy`, `Supernet`, `SearchEnv` and `BatchSource` interfaces
  is named in docs/plugins.md (the author's contract is written down);
- the plugin template builds without build isolation (setuptools >= 70.1, said in the docs),
  and automl_bin ships ``py.typed``.
"""

from __future__ import annotations

import ast
import inspect
import re
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


def _public_members(cls: type) -> list[str]:
    """The public names a class defines itself, plus the ``self.x`` its ``__init__`` assigns."""
    names = {n for n in vars(cls) if not n.startswith("_")}
    init = vars(cls).get("__init__")
    if init is not None:
        tree = ast.parse(inspect.getsource(init).strip())
        names |= {node.attr for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id == "self"
                  and not node.attr.startswith("_")}
    return sorted(names)


def _interfaces() -> list[tuple[str, str]]:
    import attrs

    from automl_bin.interfaces import SearchEnv, Strategy
    from automl_bin.interfaces.reporter import BatchSource
    from automl_bin.interfaces.supernet import Supernet

    members = [("Strategy", n) for n in _public_members(Strategy)]
    # feature_module is read by the core (automl_bin.nn.features) with getattr, not declared
    members += [("Supernet", n) for n in [*_public_members(Supernet), "feature_module"]]
    members += [("SearchEnv", f.name) for f in attrs.fields(SearchEnv)]
    members += [("BatchSource", n) for n in _public_members(BatchSource)]
    members += [("BatchSource", "len(")]  # __len__: the batch count of one pass
    return members


def _code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


@pytest.mark.parametrize("owner,member", _interfaces(), ids=lambda v: str(v))
def test_interface_member_is_documented(owner, member):
    """A plugin author learns the whole contract from docs/plugins.md: each member of the
    interfaces appears there in code (e.g. `tags()`, `env.dist`, `arch_state_dict()`)."""
    spans = _code_spans(DOCS.read_text(encoding="utf-8"))
    if member.endswith("("):
        found = any(member in span for span in spans)
    else:
        word = re.compile(rf"(?<![\w]){re.escape(member)}(?![\w])")
        found = any(word.search(span) for span in spans)
    assert found, (f"docs/plugins.md does not mention {owner}.{member} in code (`...`); "
                   f"describe it where the {owner} contract is documented")


def test_plugin_template_builds_without_build_isolation():
    """setuptools < 70.1 needs the separate `wheel` package to build a wheel, which
    `pip install --no-build-isolation` does not fetch."""
    templates = sorted((ROOT / "automl_bin" / "templates").glob("*/pyproject.toml.tmpl"))
    assert templates
    for path in templates:
        # the template is not TOML before rendering ({{package}} keys): read its first table
        head = path.read_text(encoding="utf-8").split("\n[project]")[0]
        build = tomllib.loads(head)["build-system"]["requires"]
        assert "setuptools>=70.1" in build or "wheel" in build, (
            f"{path.relative_to(ROOT)} must require setuptools>=70.1 (or wheel): {build}")
    assert "setuptools>=70.1" in DOCS.read_text(encoding="utf-8")


def test_package_ships_py_typed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert (ROOT / "automl_bin" / "py.typed").is_file()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["automl_bin"]
    assert not any(d.startswith("cattrs") for d in project["project"]["dependencies"])


def _one_shot_members() -> list[tuple[str, str]]:
    import attrs

    from automl_bin.search.one_shot import EpochPlan, OneShotStrategy

    members = [("OneShotStrategy", n) for n in _public_members(OneShotStrategy)]
    members += [("OneShotStrategy", f"self.{n}") for n in ("sgd", "stats", "weight_images")]
    members += [("EpochPlan", f.name) for f in attrs.fields(EpochPlan)]
    members += [("EpochStats", n) for n in ("stats.observe(", "stats.mean(")]
    return members


@pytest.mark.parametrize("owner,member", _one_shot_members(), ids=lambda v: str(v))
def test_one_shot_base_member_is_documented(owner, member):
    """"Writing a one-shot strategy" names every method of the base (what to implement, what
    it provides), the fields of `EpochPlan` and the recording calls of `self.stats`."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("## Writing a one-shot strategy")
    section = text[start:text.index("\n## ", start + 1)]
    spans = _code_spans(section) + re.findall(r"```python\n(.*?)```", section, re.S)
    if member.endswith("("):
        found = any(member in span for span in spans)
    else:
        word = re.compile(rf"(?<![\w.]){re.escape(member)}(?![\w])")
        found = any(word.search(span) for span in spans)
    assert found, (f"docs/plugins.md, 'Writing a one-shot strategy', does not mention "
                   f"{owner} member {member!r} in code (`...`)")
