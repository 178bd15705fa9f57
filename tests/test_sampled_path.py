"""The sampled-path base as a third-party author meets it: docs/plugins.md "Writing a
sampled-path strategy" names every member of the base, and its example conforms and runs."""

from __future__ import annotations

import re
import types
from pathlib import Path

import attrs
import pytest
from docs_examples import load_docs_example

from automl_bin.search.sampled_path import PathTrainee, SampledPathConfig, SampledPathStrategy

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def _section() -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("## Writing a sampled-path strategy")
    return text[start:text.index("\n## ", start + 1)]


def _docs_sampled_path() -> types.ModuleType:
    """The sampled-path example of docs/plugins.md, as a module."""
    return load_docs_example("sampled-path", "lowest_loss", _section())


def _members() -> list[str]:
    names = [n for n in vars(SampledPathStrategy) if not n.startswith("_")]
    names += [f.name for f in attrs.fields(SampledPathConfig)]
    names += [f.name for f in attrs.fields(PathTrainee)]
    names += ["self.trainees", "self.pruner", "self.rng", "self.sgd", "weight_images",
              "train_paths", "train_path", "score_path", "make_supernet_estimator",
              "cell_edges", "dag_problem", "WeightSgdKeys", "BilevelKeys"]
    return sorted(set(names))


@pytest.mark.parametrize("member", _members())
def test_sampled_path_member_is_documented(member):
    """Every method of the base (to implement or provided), every config key and the helpers
    for custom loops appear in the section in code."""
    section = _section()
    spans = re.findall(r"`([^`\n]+)`", section) + re.findall(r"```python\n(.*?)```", section,
                                                            re.S)
    word = re.compile(rf"(?<![\w]){re.escape(member)}(?![\w])")  # `self.score(...)` counts
    assert any(word.search(span) for span in spans), (
        f"docs/plugins.md, 'Writing a sampled-path strategy', does not mention {member!r} in "
        "code (`...`)")


def test_docs_sampled_path_example_conforms_and_runs_from_a_recipe(tmp_path):
    from automl_bin.testing import check_strategy, make_plugins, run_recipe, tiny_recipe_text

    module = _docs_sampled_path()
    assert issubclass(module.LowestLoss, SampledPathStrategy)
    check_strategy(module.LowestLoss)
    check_strategy(module.LowestLoss, {"ucb": True, "K0": 2, "trials": 1})
    plugins = make_plugins(("lowest_loss", module))  # through its register_strategies hook
    assert plugins.registry.get("strategy", "lowest_loss").cls is module.LowestLoss
    # K0 = 2, one trial: two sampled paths, then the round's prune leaves one op per edge
    text = tiny_recipe_text("lowest_loss", plugins=plugins,
                            strategy_params={"K0": 2, "trials": 1, "max_steps": 2})
    result = run_recipe(tmp_path, text, plugins=plugins)
    rewards = result.metrics("search", "reward")
    assert rewards == [-loss for loss in result.metrics("search", "val_loss")[:2]]
    assert len(rewards) == 2
    assert result.metrics("search", "final_remaining_ops") == [1.0]
    assert {"pruning_history.json", "remaining_ops.png"} <= {
        Path(a).name for a in result.artifacts("search")}
    assert result.metrics("retrain", "test_acc")
