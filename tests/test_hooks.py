"""Every hook, exercised through the plugin manager and a real (tiny) run.

Registration hooks: a local plugin registers one component of each kind. Lifecycle hooks: the
complete observer of docs/plugins.md records a run whose strategy also logs extra metrics and
an artifact, and the order of the events is checked, for a finished and for a failed run.
"""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import pytest
from docs_examples import load_docs_example

from automl_bin import hookimpl
from automl_bin.interfaces import Binarizer, Dataset, Estimator, SearchSpace, Strategy
from automl_bin.plugins import hook_signatures
from automl_bin.testing import (
    FakeEstimator,
    make_plugins,
    run_recipe,
    tiny_recipe_text,
)

LIFECYCLE = ("on_run_start", "on_phase_start", "on_epoch_end", "on_metrics", "on_artifact",
             "on_search_end", "on_retrain_end", "on_phase_end", "on_run_end")
REGISTRATION = ("register_search_spaces", "register_binarizers", "register_strategies",
                "register_estimators", "register_datasets")


SUITE = ("on_suite_start", "on_suite_end")  # exercised in tests/test_suite.py


def test_hooks_are_exactly_registration_lifecycle_and_suite():
    assert set(hook_signatures()) == set(LIFECYCLE) | set(REGISTRATION) | set(SUITE)


# --------------------------------------------------------------------------------------------
# registration hooks
# --------------------------------------------------------------------------------------------


def test_every_registration_hook_registers_its_kind():
    builtins = make_plugins().registry
    darts_space = builtins.get("search_space", "darts").cls
    darts = builtins.get("strategy", "darts").cls
    xnor = builtins.get("binarizer", "xnor").cls
    synthetic = builtins.get("dataset", "synthetic").cls

    class Space(darts_space):
        pass

    class Walk(darts):
        pass

    class Sign(xnor):
        pass

    class Data(synthetic):
        pass

    module = types.ModuleType("local_components")
    module.register_search_spaces = hookimpl(lambda register: register("local_space", Space))
    module.register_binarizers = hookimpl(lambda register: register("local_sign", Sign))
    module.register_strategies = hookimpl(lambda register: register("local_walk", Walk))
    module.register_estimators = hookimpl(lambda register: register("local_fake", FakeEstimator))
    module.register_datasets = hookimpl(lambda register: register("local_data", Data))
    registry = make_plugins(("local_components", module)).registry
    assert not registry.problems
    expected = {"search_space": ("local_space", Space, SearchSpace),
                "binarizer": ("local_sign", Sign, Binarizer),
                "strategy": ("local_walk", Walk, Strategy),
                "estimator": ("local_fake", FakeEstimator, Estimator),
                "dataset": ("local_data", Data, Dataset)}
    for kind, (name, cls, base) in expected.items():
        entry = registry.get(kind, name)
        assert entry.cls is cls and issubclass(cls, base)
        assert entry.plugin == "local_components" and entry.distribution == "<local>"


def test_component_pairs_register_without_a_hook_module():
    registry = make_plugins(("fake", FakeEstimator)).registry
    assert registry.get("estimator", "fake").cls is FakeEstimator
    with pytest.raises(TypeError, match="pass a component class with the name"):
        make_plugins(FakeEstimator)


def test_registration_hook_return_value_is_ignored():
    module = types.ModuleType("returns")
    module.register_strategies = hookimpl(lambda register: "ignored")
    plugins = make_plugins(("returns", module))
    assert not plugins.registry.problems


# --------------------------------------------------------------------------------------------
# lifecycle hooks: the documented observer on a real run
# --------------------------------------------------------------------------------------------


def _docs_observer() -> types.ModuleType:
    """The "complete observer" example of docs/plugins.md, as a module."""
    module = load_docs_example("observer", "events_log")
    assert set(LIFECYCLE) <= {n for n in vars(module) if n.startswith("on_")}
    return module


def _logging_strategy(base: type) -> type:
    """The darts strategy plus a metric at its own step and an artifact each epoch."""

    class LoggingDarts(base):
        def run_epoch(self, epoch):
            metrics = super().run_epoch(epoch)
            self.env.reporter.log_metrics({"extra": float(epoch)}, step=10 + epoch)
            path = self.env.reporter.work_dir / "note.txt"
            path.write_text(f"epoch {epoch}\n")
            self.env.reporter.log_artifact(path, "notes")
            return metrics

    return LoggingDarts


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_lifecycle_hooks_fire_in_order(tmp_path):
    darts = make_plugins().registry.get("strategy", "darts").cls
    plugins = make_plugins(("events_log", _docs_observer()),
                           ("logging_darts", _logging_strategy(darts)))
    result = run_recipe(tmp_path, tiny_recipe_text("logging_darts", plugins=plugins),
                        plugins=plugins)
    events = _events(result.run_dir)
    names = [(e["event"], e.get("phase")) for e in events]
    search = [n for n in names if n[1] == "search"]
    assert names[0] == ("run_start", None) and names[-1] == ("run_end", None)
    assert events[-1]["status"] == "FINISHED"
    # search phase: start, per epoch (metrics, artifact, epoch_end), runner artifacts, end
    assert search[0] == ("phase_start", "search") and search[-1] == ("phase_end", "search")
    epoch_ends = [e for e in events if e["event"] == "epoch_end" and e["phase"] == "search"]
    assert [e["epoch"] for e in epoch_ends] == [0, 1]
    assert "val_acc" in epoch_ends[0]["metrics"] and "epoch_seconds" in epoch_ends[0]["metrics"]
    extra = [e for e in events if e["event"] == "metrics"]
    assert [(e["step"], e["metrics"]) for e in extra] == [(10, {"extra": 0.0}), (11, {"extra": 1.0})]
    first_epoch_end = names.index(("epoch_end", "search"))  # logged inside the epoch: before
    assert names.index(("metrics", "search")) < first_epoch_end
    assert names.index(("artifact", "search")) < first_epoch_end
    artifacts = [(e["phase"], e["name"], e["folder"]) for e in events if e["event"] == "artifact"]
    assert ("search", "note.txt", "notes") in artifacts
    assert ("search", "genotype.json", None) in artifacts
    assert ("retrain", "model.pt", None) in artifacts
    order = [e["event"] for e in events if e["event"] != "artifact" and e["event"] != "metrics"
             and e["event"] != "epoch_end"]
    assert order == ["run_start", "phase_start", "search_end", "phase_end", "phase_start",
                     "retrain_end", "phase_end", "run_end"]
    phases = [(e["event"], e.get("phase"), e.get("status")) for e in events
              if e["event"] in ("phase_start", "phase_end")]
    assert phases == [("phase_start", "search", None), ("phase_end", "search", "FINISHED"),
                      ("phase_start", "retrain", None), ("phase_end", "retrain", "FINISHED")]
    search_end = next(e for e in events if e["event"] == "search_end")
    assert search_end["genotype"] == result.genotype.to_dict()
    assert "search_seconds" in search_end["metrics"]
    retrain_end = next(e for e in events if e["event"] == "retrain_end")
    assert retrain_end["test_acc"] == result.summary["test_acc"]
    assert result.announcements["events_file"] == str(result.run_dir / "events.jsonl")
    # the same calls reached the MLflow tracker (a built-in observer)
    assert result.history("search", "extra") == [(10, 0.0), (11, 1.0)]
    assert "notes/note.txt" in result.artifacts("search", "notes")
    assert "genotype.json" in result.artifacts("search")
    assert result.metrics("retrain", "test_acc")[-1] == result.summary["test_acc"]


def test_failed_run_ends_phase_and_run_as_failed(tmp_path):
    darts = make_plugins().registry.get("strategy", "darts").cls

    class Exploding(darts):
        def run_epoch(self, epoch):
            if epoch == 1:
                raise RuntimeError("boom in epoch 1")
            return super().run_epoch(epoch)

    plugins = make_plugins(("events_log", _docs_observer()), ("exploding", Exploding))
    with pytest.raises(RuntimeError, match="boom in epoch 1"):
        run_recipe(tmp_path, tiny_recipe_text("exploding", plugins=plugins), plugins=plugins)
    (run_dir,) = (tmp_path / "runs" / "tiny").iterdir()
    events = _events(run_dir)
    assert [e["event"] for e in events if e["event"] not in ("artifact", "metrics")] == [
        "run_start", "phase_start", "epoch_end", "phase_end", "run_end"]
    assert events[-2]["status"] == "FAILED" and events[-1]["status"] == "FAILED"
    assert "boom in epoch 1" in events[-1]["error"]


def test_raising_observer_does_not_stop_the_run(tmp_path):
    calls = []

    def on_epoch_end(phase, epoch):  # a subset of the parameters, by name
        calls.append((phase, epoch))
        raise ValueError("observer bug")

    module = types.ModuleType("flaky")
    module.on_epoch_end = hookimpl(on_epoch_end)
    plugins = make_plugins(("flaky", module))
    text = tiny_recipe_text("darts", tracking=False, plugins=plugins)
    with pytest.warns(RuntimeWarning, match="'flaky'.*raised in on_epoch_end"):
        result = run_recipe(tmp_path, text, plugins=plugins)
    assert result.parent is None
    assert calls == [("search", 0), ("search", 1), ("retrain", 0)]


# --------------------------------------------------------------------------------------------
# hooks go through pluggy: tracing, wrappers and ordering work as pluggy documents
# --------------------------------------------------------------------------------------------


def test_wrapper_observer_sees_the_run_and_tryfirst_orders_calls(tmp_path):
    seen = []

    def wrap_phase_start(phase):
        seen.append(("wrapper before", phase))
        result = yield
        seen.append(("wrapper after", phase))
        return result

    def late(phase):
        seen.append(("late", phase))

    def early(phase):
        seen.append(("early", phase))

    wrapping = types.ModuleType("wrapping")
    wrapping.on_phase_start = hookimpl(wrapper=True)(wrap_phase_start)
    late_mod = types.ModuleType("late")
    late_mod.on_phase_start = hookimpl(trylast=True)(late)
    early_mod = types.ModuleType("early")
    early_mod.on_phase_start = hookimpl(tryfirst=True)(early)
    # registered in the order that plain LIFO calling would get wrong
    plugins = make_plugins(("early", early_mod), ("late", late_mod), ("wrapping", wrapping))
    run_recipe(tmp_path, tiny_recipe_text("darts", tracking=False, plugins=plugins),
               plugins=plugins)
    assert seen == [
        ("wrapper before", "search"), ("early", "search"), ("late", "search"),
        ("wrapper after", "search"),
        ("wrapper before", "retrain"), ("early", "retrain"), ("late", "retrain"),
        ("wrapper after", "retrain"),
    ]


def test_a_raising_wrapper_is_reported_not_propagated(tmp_path):
    def on_run_end(status):
        yield
        raise RuntimeError("wrapper bug")

    module = types.ModuleType("bad_wrapper")
    module.on_run_end = hookimpl(wrapper=True)(on_run_end)
    plugins = make_plugins(("bad_wrapper", module))
    with pytest.warns(RuntimeWarning, match="wrapper raised in on_run_end"):
        result = run_recipe(tmp_path, tiny_recipe_text("darts", tracking=False, plugins=plugins),
                            plugins=plugins)
    assert result.parent is None


def test_trace_hooks_prints_every_hook_call(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("AUTOML_BIN_TRACE_HOOKS", "1")
    plugins = make_plugins()
    run_recipe(tmp_path, tiny_recipe_text("darts", tracking=False, plugins=plugins),
               plugins=plugins)
    err = capfd.readouterr().err
    for hook in ("register_strategies", "on_run_start", "on_phase_start", "on_epoch_end",
                 "on_search_end", "on_retrain_end", "on_run_end"):
        assert re.search(rf"^\[hook\] {hook}\(", err, re.M), hook
