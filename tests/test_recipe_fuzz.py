"""Property-based: random and mutated recipes never crash `automl-bin check`.

Whatever TOML a user writes, `check` answers exit 0 (valid) or exit 2 with a one-paragraph
``Error:`` message, never a traceback or exit 1 (which would mean an unhandled exception).
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl_bin.cli.main import cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [tomllib.loads(p.read_text(encoding="utf-8"))
           for p in sorted((ROOT / "recipes").glob("*.toml"))]
SECTIONS = ["experiment", "data", "search_space", "binarizer", "strategy", "retrain", "tracking",
            "suite", "sweep", "experimnt", "extra"]
KEYS = sorted({k for doc in SHIPPED for sec in doc.values() if isinstance(sec, dict) for k in sec}
              | {"name", "seeds", "label", "enabled", "uri", "network", "estimator", "epoch"})
NAMES = ["darts", "random", "pc_darts", "bnas", "cp_nas", "dcp_nas", "xnor", "recon", "none",
         "synthetic", "fashion_mnist", "cifar10", "retrain", "supernet", "nope", ""]

scalars = st.one_of(
    st.integers(min_value=-10**12, max_value=10**12), st.booleans(), st.sampled_from(NAMES),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=8)
sections = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
random_docs = st.dictionaries(st.sampled_from(SECTIONS),
                              st.one_of(sections, st.lists(sections, max_size=3), scalars),
                              max_size=8)


@st.composite
def mutated_docs(draw):
    """A shipped recipe with a few keys dropped, retyped, renamed or added."""
    doc = copy.deepcopy(draw(st.sampled_from(SHIPPED)))
    for _ in range(draw(st.integers(1, 4))):
        tables = [s for s, v in doc.items() if isinstance(v, dict)]
        if not tables:
            break
        section = doc[draw(st.sampled_from(tables))]
        action = draw(st.sampled_from(["drop", "retype", "rename", "add"]))
        keys = sorted(section)
        if action == "add" or not keys:
            section[draw(st.sampled_from(KEYS))] = draw(values)
            continue
        key = draw(st.sampled_from(keys))
        if action == "drop":
            del section[key]
        elif action == "retype":
            section[key] = draw(values)
        else:
            section[key + draw(st.sampled_from(["s", "_", "x"]))] = section.pop(key)
    return doc


def _text(doc) -> str | None:
    try:
        return tomli_w.dumps(doc)
    except (TypeError, ValueError):  # e.g. a top-level scalar next to tables: not TOML
        return None


def _check(tmp_path_factory, doc, overrides=()) -> None:
    text = _text(doc)
    if text is None:
        return
    path = tmp_path_factory.mktemp("fuzz") / "recipe.toml"
    path.write_text(text, encoding="utf-8")
    args = ["check", str(path), *[a for o in overrides for a in ("--set", o)]]
    result = CliRunner().invoke(cli, args)
    out = result.output
    assert result.exit_code in (0, 2), (result.exit_code, text, out, result.exception)
    assert "Traceback" not in out, (text, out)
    if result.exit_code == 2:
        assert out.startswith(("Error:", "Usage:")) and len(out.strip()) > 20, (text, out)
    else:
        assert out.startswith("OK:"), (text, out)


FUZZ = settings(max_examples=int(os.environ.get("AUTOML_BIN_FUZZ_EXAMPLES", "150")), deadline=None,
                derandomize=not os.environ.get("AUTOML_BIN_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@FUZZ
@given(doc=random_docs)
def test_random_recipes_fail_cleanly(tmp_path_factory, doc):
    _check(tmp_path_factory, doc)


@FUZZ
@given(doc=mutated_docs(),
       overrides=st.lists(st.builds(lambda k, v: f"{k}={v}",
                                    st.sampled_from(["strategy.epochs", "data.subset",
                                                     "experiment.seeds", "retrain.epochs",
                                                     "binarizer.name", "strategy.x.y"]),
                                    st.sampled_from(["1", "0", "-3", "nan", "\"x\"", "[1, 2]",
                                                     "{a = 1}", "true", "1e99"])),
                          max_size=2))
def test_mutated_shipped_recipes_fail_cleanly(tmp_path_factory, doc, overrides):
    _check(tmp_path_factory, doc, overrides)


@pytest.mark.parametrize("text", ["[[[", "a = ", "x = 1\nx = 2", "\x00", "[strategy]\nname = 3"])
def test_broken_toml_is_one_paragraph(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", str(path)])
    assert result.exit_code == 2 and result.output.startswith("Error:"), result.output
