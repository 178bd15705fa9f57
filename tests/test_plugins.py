"""Plugin manager and registry: discovery, broken plugins, duplicates, observer isolation."""

from __future__ import annotations

import types
import warnings

import pytest

from automl_bin import hookimpl
from automl_bin.errors import UsageError
from automl_bin.interfaces import Strategy
from automl_bin.plugins import call_observers, hook_signatures, load_plugins
from automl_bin_plugins.strategies.darts import DartsStrategy


def _module(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(mod, hook_name, hookimpl(fn))
    return mod


def test_builtins_come_from_entry_points(plugins):
    names = {(e.kind, e.name): e for e in plugins.registry}
    entry = names[("strategy", "darts")]
    assert entry.distribution == "automl-bin" and entry.cls is DartsStrategy
    assert entry.module.endswith("DartsStrategy")
    assert not plugins.registry.problems


def test_duplicate_name_names_both_plugins():
    dup = _module("dup", register_strategies=lambda register: register("darts", DartsStrategy))
    ps = load_plugins([("dup_plugin", dup)])
    problems = [str(p) for p in ps.registry.problems]
    assert any("registered twice" in p and "darts_strategy" in p and "dup_plugin" in p
               for p in problems)
    assert ps.registry.get("strategy", "darts").plugin == "darts_strategy"


def test_raising_hook_is_reported_and_others_still_load():
    def boom(register):
        raise RuntimeError("kaput")

    ps = load_plugins([("broken", _module("broken", register_strategies=boom))])
    assert any(p.plugin == "broken" and "kaput" in p.message for p in ps.registry.problems)
    assert "darts" in ps.registry.names("strategy")
    with pytest.raises(UsageError, match="Some plugins failed to load: plugin 'broken'"):
        ps.registry.get("strategy", "nope")


def test_wrong_type_and_bad_name_are_reported():
    class NotAStrategy:
        pass

    mod = _module("wrong", register_strategies=lambda register: (
        register("mine", NotAStrategy), register("Bad-Name", DartsStrategy)))
    ps = load_plugins([("wrong", mod)])
    messages = " ".join(p.message for p in ps.registry.problems)
    assert "not a subclass of automl_bin.interfaces.Strategy" in messages
    assert "mine" not in ps.registry.names("strategy")


def test_unknown_hook_name_is_reported():
    mod = _module("typo", register_stratgies=lambda register: None)
    ps = load_plugins([("typo", mod)])
    assert any(p.plugin == "typo" and "register_stratgies" in p.message
               for p in ps.registry.problems)
    assert not ps.pm.has_plugin("typo")


def test_observers_are_isolated():
    calls = []

    def bad_observer(run, phase):
        raise ValueError("observer bug")

    def good_observer(run, phase):
        calls.append(phase)

    ps = load_plugins([("bad", _module("bad", on_phase_start=bad_observer)),
                       ("good", _module("good", on_phase_start=good_observer))],
                      entry_points=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call_observers(ps, "on_phase_start", run=None, phase="search")
    assert calls == ["search"]
    assert any("observer bug" in str(w.message) and "'bad'" in str(w.message) for w in caught)


def test_registration_of_a_valid_third_party_strategy():
    class Mine(Strategy):
        def num_epochs(self):
            return 1

        def run_epoch(self, epoch):
            return {}

        def derive(self):
            raise NotImplementedError

    ps = load_plugins([("mine", _module("mine", register_strategies=lambda register: register("mine", Mine)))])
    entry = ps.registry.get("strategy", "mine")
    assert entry.distribution == "<local>" and entry.cls is Mine


def test_every_hook_has_a_docstring():
    from automl_bin import hookspecs

    sigs = hook_signatures()
    assert {"register_strategies", "on_run_start", "on_epoch_end", "on_search_end",
            "on_retrain_end", "on_run_end"} <= set(sigs)
    for name in sigs:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name
