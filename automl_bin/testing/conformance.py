"""The conformance suite: the contract every strategy, binarizer and search space must keep.

automl-bin runs it over every built-in component (``tests/test_conformance.py``); plugin
authors call it from their own tests::

    from automl_bin.testing import check_strategy

    def test_my_strategy_conforms():
        check_strategy(MyStrategy)

Each function takes the component *class* (and optionally a config: an instance of its
``Config`` or a mapping of recipe keys), runs the checks on tiny inputs (seconds on a CPU), and
raises ``AssertionError`` naming the broken rule and how to fix it. On success it returns a
`ConformanceReport` listing what was checked.

Strategy rules (`check_strategy`):

1. ``setup(env)`` works on the tiny DARTS space and ``num_epochs()`` is an int >= 1.
2. One ``run_epoch(0)`` returns a mapping of finite float metrics.
3. That epoch changes the architecture state (``state_dict()``, ``op_weights()`` or
   ``derive()`` differ before and after), or the class declares why it may not:
   ``changes_architecture_each_epoch = False`` and a non-empty
   ``why_architecture_may_not_change`` string.
4. ``derive()`` returns a `Genotype` the space validates, with a lossless JSON round trip.
5. ``op_weights()`` is None or one ``(edges, len(space.op_names))`` array per cell type.
6. ``state_dict()`` survives ``torch.save``/``torch.load(weights_only=True)`` (checkpoints are
   loaded that way, so only tensors and plain data); a fresh instance after ``setup`` and
   ``load_state_dict`` derives the same genotype and can run the next epoch.
7. ``final_metrics()`` are finite floats; ``teardown()`` works.
8. Unsupported combinations fail clearly: with ``requires_estimator = True``, ``setup`` (or the
   first epoch) without an estimator raises ValueError or `automl_bin.errors.UsageError`; a
   built-in binarizer (``none``, ``xnor``) that ``check_compatible()`` refuses with a sentence
   is refused by ``setup`` too, with ValueError.

Without ``binarizer=``, the checks use the first of ``none``, ``xnor`` and ``recon`` that
``check_compatible()`` accepts (a 1-bit-only strategy is checked with ``xnor``).

Config fields ``epochs``, ``max_steps``, ``steps_per_epoch``, ``samples_per_epoch`` and
``warmup_epochs`` are shrunk when present (see `automl_bin.testing.fixtures.STRATEGY_SHRINK`).
"""

from __future__ import annotations

import copy
import io
import math
import numbers
import random
from collections.abc import Mapping
from typing import Any

import attrs

from automl_bin.errors import UsageError
from automl_bin.interfaces import Binarizer, Genotype, SearchSpace, Strategy
from automl_bin.plugins import PluginSet
from automl_bin.registry import Registry
from automl_bin.testing.fixtures import (
    NETWORK_SHRINK,
    SPACE_SHRINK,
    STRATEGY_SHRINK,
    FakeEstimator,
    _registry,
    _structure,
    shrink_config,
    tiny_search_env,
)

__all__ = ["ConformanceReport", "check_binarizer", "check_search_space", "check_strategy"]


@attrs.define
class ConformanceReport:
    """What a conformance check verified (``checks``) and what it noticed (``notes``)."""

    component: str
    checks: list[str] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)

    def ok(self, check: str) -> None:
        self.checks.append(check)


class _Checker:
    def __init__(self, label: str) -> None:
        self.label = label
        self.report = ConformanceReport(label)

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"{self.label}: {message}")

    def require(self, condition: Any, message: str) -> None:
        if not condition:
            raise self.fail(message)


def _label(fn: str, cls: type) -> str:
    return f"{fn}({getattr(cls, '__qualname__', cls)!r})".replace("'", "")


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1:
        try:
            return float(value.item())
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def _check_metrics(chk: _Checker, metrics: Any, where: str) -> dict[str, float]:
    chk.require(isinstance(metrics, Mapping),
                f"{where} must return a mapping of metric name -> float, got {type(metrics).__name__}")
    out = {}
    for key, value in metrics.items():
        chk.require(isinstance(key, str), f"{where} returned a non-string metric name {key!r}")
        number = _as_float(value)
        chk.require(number is not None,
                    f"{where} returned metric {key!r} = {value!r}, which is not a number")
        chk.require(math.isfinite(number),
                    f"{where} returned metric {key!r} = {number}, which is not finite")
        out[key] = number
    return out


def _snapshot(value: Any) -> Any:
    """A deep copy that clones tensors (state_dict tensors share storage with parameters)."""
    if hasattr(value, "detach") and hasattr(value, "clone"):
        return value.detach().clone()
    if isinstance(value, Mapping):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_snapshot(v) for v in value)
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def _same(a: Any, b: Any) -> bool:
    """Deep equality that compares tensors by value."""
    if hasattr(a, "detach") and hasattr(b, "detach"):
        import torch

        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:
        return a is b


def _derive_or_error(strategy: Strategy) -> Any:
    try:
        return strategy.derive()
    except Exception as exc:  # e.g. nothing derived before the first epoch
        return ("<derive raised>", type(exc).__name__)


def _check_genotype(chk: _Checker, genotype: Any, space: SearchSpace, where: str) -> Genotype:
    chk.require(isinstance(genotype, Genotype),
                f"{where} must return an automl_bin.interfaces.Genotype, got {genotype!r}")
    try:
        space.validate_genotype(genotype)
    except ValueError as exc:
        raise chk.fail(f"{where} returned a genotype the search space rejects: {exc}") from exc
    again = Genotype.from_json(genotype.to_json())
    chk.require(again == genotype,
                f"{where} returned a genotype whose JSON round trip differs (keep meta values "
                f"JSON-plain): {genotype!r} != {again!r}")
    return genotype


def _strategy_config(cls: type, config: Any) -> Any:
    return shrink_config(_structure(cls.Config, config, "strategy"), STRATEGY_SHRINK)


def _search_estimator(cls: type, config: Any, estimator: Any, plugins: PluginSet | None) -> Any:
    """The estimator a recipe would give the strategy: ``estimator``, else the one its config
    names (``estimator`` / ``estimator_params`` keys), else a `FakeEstimator` if it needs one."""
    if estimator is not None:
        return estimator
    name = getattr(config, "estimator", None)
    if isinstance(name, str):
        registry = _registry(plugins)
        if name in registry.names("estimator"):
            est_cls = registry.get("estimator", name).cls
            params = getattr(config, "estimator_params", None) or {}
            return est_cls(_structure(est_cls.Config, params, "strategy.estimator_params"))
    if getattr(cls, "requires_estimator", False):
        return FakeEstimator()
    return None


def _space_for_probe(space: Any, plugins: PluginSet | None) -> Any:
    from automl_bin.testing.fixtures import tiny_space

    return tiny_space(space or "darts", plugins=plugins) if space is None or isinstance(
        space, str) else space


@attrs.define
class _StrategyCase:
    """What the strategy checks share: the class, its shrunk config and what a test environment
    is built from (``binarizer`` holds the checked binarizer once it is resolved)."""

    chk: _Checker
    cls: type
    cfg: Any
    space: Any
    binarizer: Any
    estimator: Any
    plugins: PluginSet | None
    registry: Registry

    def env(self, binarizer: Any = None, with_estimator: bool = True) -> Any:
        """A fresh tiny search environment; ``binarizer`` replaces the checked one."""
        return tiny_search_env(
            space=self.space, binarizer=self.binarizer if binarizer is None else binarizer,
            plugins=self.plugins,
            estimator=(_search_estimator(self.cls, self.cfg, self.estimator, self.plugins)
                       if with_estimator else None))


def check_strategy(cls: type, config: Any = None, *, space: Any = None, binarizer: Any = None,
                   estimator: Any = None, plugins: PluginSet | None = None) -> ConformanceReport:
    """Check that the strategy class ``cls`` keeps the strategy contract (module docstring).

    :param config: an instance of ``cls.Config`` or a mapping of its recipe keys (default: the
        defaults); size keys are shrunk.
    :param space: a search space instance or registered name (default: the tiny DARTS space).
    :param binarizer: a binarizer instance, class or registered name (default: the first of
        ``"none"``, ``"xnor"``, ``"recon"`` that ``check_compatible`` accepts).
    :param estimator: the search estimator (default: the one the config names, else a
        `FakeEstimator` when ``cls.requires_estimator``).
    :param plugins: the plugin set used for names and ``env.create`` (default: built-ins).
    """
    chk = _Checker(_label("check_strategy", cls))
    chk.require(isinstance(cls, type) and issubclass(cls, Strategy),
                "is not a subclass of automl_bin.interfaces.Strategy")
    case = _StrategyCase(chk, cls, _strategy_config(cls, config), space, binarizer, estimator,
                         plugins, _registry(plugins))
    probe = cls(case.cfg)
    env = _check_strategy_compatibility(case, probe)
    _check_strategy_refuses_binarizers(case, probe, env)
    _check_strategy_requires_estimator(case)
    _check_strategy_search(case, env)
    return chk.report


def _check_strategy_compatibility(case: _StrategyCase, probe: Strategy) -> Any:
    """Resolve the default binarizer and check that ``check_compatible`` accepts the test space
    and binarizer; returns the environment the search checks run in."""
    if case.binarizer is None:
        # the first built-in binarizer the strategy accepts (1-bit-only strategies get xnor)
        case.binarizer = next((name for name in ("none", "xnor", "recon")
                               if not probe.check_compatible(
                                   _space_for_probe(case.space, case.plugins),
                                   case.registry.create("binarizer", name))),
                              "none")
        case.chk.report.notes.append(f"checked with the {case.binarizer!r} binarizer")
    env = case.env()
    problem = probe.check_compatible(env.space, env.binarizer)
    case.chk.require(not problem,
                     f"check_compatible() rejects the test space/binarizer ({problem}); "
                     "pass space= and binarizer= that it supports")
    case.chk.report.ok("check_compatible accepts the test space and binarizer")
    return env


def _check_strategy_refuses_binarizers(case: _StrategyCase, probe: Strategy, env: Any) -> None:
    """Unsupported combinations: each built-in binarizer ``check_compatible`` refuses is
    refused by ``setup`` too."""
    for other in ("none", "xnor"):
        refusal = probe.check_compatible(env.space, case.registry.create("binarizer", other))
        if refusal:
            _check_strategy_refuses_binarizer(case, other, refusal)


def _check_strategy_refuses_binarizer(case: _StrategyCase, other: str, refusal: Any) -> None:
    chk = case.chk
    chk.require(isinstance(refusal, str) and refusal.strip(),
                f"check_compatible() with the {other!r} binarizer returned {refusal!r}; "
                "return None or a sentence saying what to change")
    refused = case.cls(case.cfg)
    try:
        refused.setup(case.env(binarizer=other))
    except (ValueError, UsageError) as exc:
        chk.require(str(exc).strip(), f"setup() with the refused {other!r} binarizer raised "
                                      "an error without a message")
    except Exception as exc:
        raise chk.fail(f"check_compatible() refuses the {other!r} binarizer, but setup() "
                       f"with it raised {type(exc).__name__}: {exc}; raise ValueError "
                       "with check_compatible()'s sentence") from exc
    else:
        raise chk.fail(f"check_compatible() refuses the {other!r} binarizer ({refusal}), "
                       "but setup() accepts it; raise ValueError in setup() too (runs "
                       "built without a recipe skip check_compatible)")
    finally:
        refused.teardown()
    chk.report.ok(f"an unsupported binarizer ({other!r}) is refused by check_compatible "
                  "and setup")


def _check_strategy_requires_estimator(case: _StrategyCase) -> None:
    """Unsupported combination: a required estimator is missing."""
    if not getattr(case.cls, "requires_estimator", False):
        return
    chk = case.chk
    lonely = case.cls(case.cfg)
    try:
        lonely.setup(case.env(with_estimator=False))
        lonely.run_epoch(0)
    except (ValueError, UsageError) as exc:
        chk.require(str(exc).strip(), "raised an error without a message when set up without "
                                      "its required estimator")
        chk.report.ok("requires_estimator: a missing estimator raises a clear error")
    except Exception as exc:
        raise chk.fail(
            f"requires_estimator = True, but running without an estimator raised "
            f"{type(exc).__name__}: {exc}; raise ValueError (or UsageError) in setup() that "
            "says which recipe key to set") from exc
    else:
        raise chk.fail("requires_estimator = True, but setup() and run_epoch() without an "
                       "estimator raised nothing; raise ValueError in setup() saying which "
                       "recipe key to set")
    finally:
        lonely.teardown()


def _check_strategy_search(case: _StrategyCase, env: Any) -> None:
    """Setup, one epoch, derive, op weights, final metrics and the state round trip, on one
    instance that is torn down however the checks end."""
    import torch

    strategy = case.cls(case.cfg)
    torch.manual_seed(0)
    try:
        state = _check_strategy_first_epoch(case, strategy, env)
        genotype = _check_strategy_derive(case, strategy, env.space)
        _check_strategy_state_roundtrip(case, state, genotype)
    finally:
        strategy.teardown()
    case.chk.report.ok("teardown()")


def _check_strategy_first_epoch(case: _StrategyCase, strategy: Strategy, env: Any) -> Mapping:
    """``setup``, ``num_epochs()`` and ``run_epoch(0)``; returns the state after the epoch."""
    chk = case.chk
    strategy.setup(env)
    epochs = strategy.num_epochs()
    chk.require(isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1,
                f"num_epochs() must be an int >= 1, got {epochs!r}")
    chk.report.ok(f"setup and num_epochs() = {epochs}")

    before = (_snapshot(strategy.state_dict()), _snapshot(strategy.op_weights()),
              _derive_or_error(strategy))
    metrics = _check_metrics(chk, strategy.run_epoch(0), "run_epoch(0)")
    chk.report.ok(f"run_epoch(0) returns finite metrics {sorted(metrics)}")
    state = strategy.state_dict()
    chk.require(isinstance(state, Mapping), f"state_dict() must return a mapping, got "
                                            f"{type(state).__name__}")
    after = (_snapshot(state), _snapshot(strategy.op_weights()), _derive_or_error(strategy))
    _check_strategy_architecture_change(case, before, after)
    return state


def _check_strategy_architecture_change(case: _StrategyCase, before: tuple, after: tuple) -> None:
    """The epoch changed the architecture state, or the class declares why it may not."""
    chk, cls = case.chk, case.cls
    changed = [what for what, a, b in zip(("state_dict()", "op_weights()", "derive()"),
                                          before, after) if not _same(a, b)]
    if changed:
        chk.report.ok(f"one epoch changes the architecture state ({', '.join(changed)})")
        return
    declared = getattr(cls, "changes_architecture_each_epoch", True) is False
    reason = getattr(cls, "why_architecture_may_not_change", None)
    chk.require(declared and isinstance(reason, str) and reason.strip(),
                "one search epoch (run_epoch(0)) left the architecture state unchanged: "
                "state_dict(), op_weights() and derive() are the same before and after. "
                "Update the architecture every epoch, return the search state from "
                "state_dict(), or declare why an epoch may change nothing with the class "
                "attributes changes_architecture_each_epoch = False and "
                "why_architecture_may_not_change = '...'")
    chk.report.ok("declares why an epoch may leave the architecture unchanged")
    chk.report.notes.append(f"architecture unchanged after one epoch: {reason}")


def _check_strategy_derive(case: _StrategyCase, strategy: Strategy,
                           space: SearchSpace) -> Genotype:
    """``derive()``, ``op_weights()`` and ``final_metrics()``; returns the derived genotype."""
    chk = case.chk
    genotype = _check_genotype(chk, strategy.derive(), space, "derive()")
    chk.report.ok("derive() returns a valid genotype with a JSON round trip")
    weights = strategy.op_weights()
    if weights is not None:
        _check_strategy_op_weights(chk, weights, len(space.op_names))
    _check_metrics(chk, strategy.final_metrics(), "final_metrics()")
    return genotype


def _check_strategy_op_weights(chk: _Checker, weights: Any, n_ops: int) -> None:
    chk.require(isinstance(weights, Mapping),
                f"op_weights() must be None or a mapping cell type -> (edges x ops), got "
                f"{type(weights).__name__}")
    for cell, w in weights.items():
        shape = tuple(getattr(w, "shape", ()) or (len(w), len(w[0]) if len(w) else 0))
        chk.require(len(shape) == 2 and shape[1] == n_ops,
                    f"op_weights()[{cell!r}] has shape {shape}; it must be (edges, "
                    f"{n_ops}) with one column per op of space.op_names")
    chk.report.ok("op_weights() has one column per op")


def _check_strategy_state_roundtrip(case: _StrategyCase, state: Mapping,
                                    genotype: Genotype) -> None:
    """The state survives a checkpoint's save/load, and a fresh instance loaded with it derives
    the same genotype and runs the next epoch."""
    import torch

    chk = case.chk
    loaded = _checkpoint_roundtrip(chk, state)
    resumed = case.cls(case.cfg)
    try:
        torch.manual_seed(1)  # a different init: everything must come from the state
        resumed.setup(case.env())
        resumed.load_state_dict(loaded)
        chk.require(_derive_or_error(resumed) == genotype,
                    "a fresh instance after setup() and load_state_dict(state_dict()) derives "
                    f"{_derive_or_error(resumed)!r}, not {genotype!r}; return everything the "
                    "search decided from state_dict() and restore it in load_state_dict()")
        chk.report.ok("state_dict round trip: a resumed instance derives the same genotype")
        if resumed.num_epochs() > 1:
            _check_metrics(chk, resumed.run_epoch(1), "run_epoch(1) after load_state_dict")
            chk.report.ok("a resumed instance runs the next epoch")
    finally:
        resumed.teardown()


def _checkpoint_roundtrip(chk: _Checker, state: Mapping) -> Any:
    """``state`` after ``torch.save`` and ``torch.load(weights_only=True)``, as checkpoints do."""
    import torch

    buffer = io.BytesIO()
    try:
        torch.save(dict(state), buffer)
        buffer.seek(0)
        return torch.load(buffer, weights_only=True)
    except Exception as exc:
        raise chk.fail(f"state_dict() does not round-trip through torch.save and "
                       f"torch.load(weights_only=True), as checkpoints do: "
                       f"{type(exc).__name__}: {exc}; return tensors and plain data "
                       "(dicts, lists, tuples, str, int, float, bool, None)") from exc


# --------------------------------------------------------------------------------------------
# binarizers
# --------------------------------------------------------------------------------------------


def _check_gradient(chk: _Checker, tensor: Any, where: str) -> None:
    import torch

    grad = tensor.grad
    chk.require(grad is not None, f"{where}: no gradient reaches the input (the surrogate "
                                  "gradient must flow; do not detach the whole output)")
    chk.require(grad.shape == tensor.shape,
                f"{where}: the input gradient has shape {tuple(grad.shape)}, not "
                f"{tuple(tensor.shape)}")
    chk.require(bool(torch.isfinite(grad).all()), f"{where}: the input gradient is not finite")
    chk.require(bool(grad.abs().sum() > 0), f"{where}: the input gradient is zero everywhere")


def check_binarizer(cls: type, config: Any = None) -> ConformanceReport:
    """Check that the binarizer class ``cls`` keeps the binarizer contract.

    - ``weight_bits`` and ``activation_bits`` are ints in 1..32;
    - the weight quantizer of a random ``(8, 4, 3, 3)`` weight returns that shape; with 1 bit
      each output channel takes at most the two values ``±s`` (``s > 0``, one ``s`` per
      channel), with ``b`` bits at most ``2**b`` values, with 32 bits it is the identity;
    - the activation quantizer returns values in ``{-1, +1}`` with 1 bit (times a positive scale
      per position, equal across channels, when the config has ``act_scale = true``), at most
      ``2**b`` values with ``b`` bits, the identity with 32 bits;
    - gradients reach both inputs with their shapes, finite and not all zero;
    - ``aux_losses(model, features, labels)`` and ``aux_losses(model)`` return dicts of finite
      scalar tensors;
    - a `automl_bin.nn.qconv.QConv2d` built with it runs forward and backward, and its state
      dict loads into a fresh one that computes the same output.
    """
    import torch

    chk = _Checker(_label("check_binarizer", cls))
    chk.require(isinstance(cls, type) and issubclass(cls, Binarizer),
                "is not a subclass of automl_bin.interfaces.Binarizer")
    cfg = _structure(cls.Config, config, "binarizer")
    binarizer = cls(cfg)
    _check_binarizer_bits(chk, binarizer)
    torch.manual_seed(0)
    _check_binarizer_weights(chk, binarizer)
    _check_binarizer_activations(chk, binarizer)
    torch.manual_seed(0)
    conv, inputs = _check_binarizer_qconv(chk, binarizer)
    _check_qconv_state_roundtrip(chk, conv, inputs, cls(cfg),
                                 binarize_input=binarizer.activation_bits < 32)
    return chk.report


def _check_binarizer_bits(chk: _Checker, binarizer: Binarizer) -> None:
    wb, ab = binarizer.weight_bits, binarizer.activation_bits
    for attr, bits in (("weight_bits", wb), ("activation_bits", ab)):
        chk.require(isinstance(bits, int) and not isinstance(bits, bool) and 1 <= bits <= 32,
                    f"{attr} must be an int between 1 and 32, got {bits!r}")
    chk.report.ok(f"bit widths: weights {wb}, activations {ab}")


def _check_binarizer_weights(chk: _Checker, binarizer: Binarizer) -> None:
    """The weight quantizer keeps the weight's shape, takes the values its bit width allows and
    passes a gradient back."""
    import torch
    from torch import nn

    weight = torch.randn(8, 4, 3, 3, requires_grad=True)
    quantizer = binarizer.weight_quantizer(8)
    chk.require(isinstance(quantizer, nn.Module), f"weight_quantizer() must return an nn.Module, "
                                                  f"got {type(quantizer).__name__}")
    out = quantizer(weight)
    chk.require(tuple(out.shape) == (8, 4, 3, 3), f"the weight quantizer maps (8, 4, 3, 3) to "
                                                  f"{tuple(out.shape)}")
    chk.require(bool(torch.isfinite(out).all()), "the weight quantizer output is not finite")
    _check_weight_values(chk, out.detach(), weight.detach(), binarizer.weight_bits)
    out.backward(torch.randn_like(out))
    _check_gradient(chk, weight, "weight quantizer backward")
    for name, p in quantizer.named_parameters():
        if p.grad is not None:
            chk.require(bool(torch.isfinite(p.grad).all()),
                        f"the weight quantizer's parameter {name!r} gets a non-finite gradient")
    chk.report.ok("weight gradients flow with the weight's shape")


def _check_weight_values(chk: _Checker, values: Any, weight: Any, wb: int) -> None:
    """The quantized weight ``values`` of ``weight`` at ``wb`` bits: the identity at 32, ±s per
    output channel at 1, at most ``2**wb`` values per channel otherwise."""
    import torch

    if wb >= 32:
        chk.require(torch.equal(values, weight),
                    "weight_bits = 32 (real-valued), but the weight quantizer is not the identity")
        chk.report.ok("real weights: identity")
    elif wb == 1:
        for c in range(values.shape[0]):
            mags = values[c].abs().unique()
            chk.require(len(mags) == 1 and float(mags[0]) > 0,
                        f"weight_bits = 1, but output channel {c} takes the values "
                        f"{sorted(set(values[c].flatten().tolist()))[:6]}; a 1-bit weight must be "
                        "±s with one s > 0 per output channel")
        chk.report.ok("1-bit weights: ±s per output channel, s > 0")
    else:
        for c in range(values.shape[0]):
            n = len(values[c].unique())
            chk.require(n <= 2**wb, f"weight_bits = {wb}, but output channel {c} takes {n} "
                                    f"distinct values (at most {2**wb})")
        chk.report.ok(f"{wb}-bit weights: at most {2**wb} values per channel")


def _check_binarizer_activations(chk: _Checker, binarizer: Binarizer) -> None:
    """The activation quantizer keeps the input's shape, takes the values its bit width allows
    and passes a gradient back."""
    import torch
    from torch import nn

    x = (1.5 * torch.randn(2, 4, 5, 5)).requires_grad_(True)
    act = binarizer.activation_quantizer()
    chk.require(isinstance(act, nn.Module), f"activation_quantizer() must return an nn.Module, "
                                            f"got {type(act).__name__}")
    y = act(x)
    chk.require(y.shape == x.shape, f"the activation quantizer maps {tuple(x.shape)} to "
                                    f"{tuple(y.shape)}")
    chk.require(bool(torch.isfinite(y).all()), "the activation quantizer output is not finite")
    _check_activation_values(chk, binarizer, y.detach(), x.detach())
    y.backward(torch.randn_like(y))
    _check_gradient(chk, x, "activation quantizer backward")
    chk.report.ok("activation gradients flow with the input's shape")


def _check_activation_values(chk: _Checker, binarizer: Binarizer, yv: Any, x: Any) -> None:
    """The quantized activations ``yv`` of ``x``: the identity at 32 bits, ±1 (±k per position
    with ``act_scale``) at 1 bit, at most ``2**bits`` values otherwise."""
    import torch

    ab = binarizer.activation_bits
    if ab >= 32:
        chk.require(torch.equal(yv, x),
                    "activation_bits = 32, but the activation quantizer is not the identity")
        chk.report.ok("real activations: identity")
    elif ab == 1:
        if getattr(binarizer.config, "act_scale", False):
            mag = yv.abs()
            chk.require(bool((mag > 0).all()) and torch.allclose(mag, mag.amax(dim=1, keepdim=True)),
                        "act_scale = true, but the activation output is not ±k with one k > 0 "
                        "per position (equal across channels)")
            chk.report.ok("1-bit activations: ±k per position (act_scale)")
        else:
            bad = sorted(set(yv.unique().tolist()) - {-1.0, 1.0})
            chk.require(not bad, f"activation_bits = 1, but the activation output takes the "
                                 f"values {bad[:6]} besides -1 and +1")
            chk.report.ok("1-bit activations: values in {-1, +1}")
    else:
        n = len(yv.unique())
        chk.require(n <= 2**ab, f"activation_bits = {ab}, but the output takes {n} distinct "
                                f"values (at most {2**ab})")


def _check_binarizer_qconv(chk: _Checker, binarizer: Binarizer) -> tuple[Any, Any]:
    """A `QConv2d` built with the binarizer runs forward and backward with its aux losses;
    returns the convolution and its input."""
    import torch
    from torch import nn

    from automl_bin.nn.qconv import QConv2d

    ab = binarizer.activation_bits
    conv = QConv2d(4, 8, 3, binarizer=binarizer, padding=1, binarize_input=ab < 32)
    model = nn.Sequential(conv, nn.BatchNorm2d(8))
    inputs = torch.randn(6, 4, 6, 6)
    logits = model(inputs)
    chk.require(tuple(logits.shape) == (6, 8, 6, 6),
                f"a QConv2d(4, 8, 3, padding=1) built with it maps (6, 4, 6, 6) to "
                f"{tuple(logits.shape)}")
    features = logits.mean(dim=(2, 3))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = logits.square().mean() + _check_aux_losses(chk, binarizer, model, features, labels)
    loss.backward()
    _check_gradient(chk, conv.weight, "QConv2d backward (latent weight)")
    chk.require(conv.weight_bits == binarizer.weight_bits,
                "QConv2d does not carry the binarizer's weight_bits")
    chk.report.ok("QConv2d forward and backward")
    return conv, inputs


def _check_aux_losses(chk: _Checker, binarizer: Binarizer, model: Any, features: Any,
                      labels: Any) -> Any:
    """Both ``aux_losses`` calls return dicts of finite scalar tensors; returns the sum of the
    terms of the call with features and labels (the one a training step adds)."""
    import torch

    total = torch.zeros(())
    for call, kwargs in (("aux_losses(model, features, labels)",
                          {"features": features, "labels": labels}), ("aux_losses(model)", {})):
        terms = binarizer.aux_losses(model, **kwargs)
        chk.require(isinstance(terms, Mapping), f"{call} must return a dict, got "
                                                f"{type(terms).__name__}")
        for name, term in terms.items():
            chk.require(isinstance(name, str) and isinstance(term, torch.Tensor)
                        and term.numel() == 1,
                        f"{call} must map names to scalar tensors; {name!r} -> {term!r}")
            chk.require(bool(torch.isfinite(term).all()), f"{call}: {name!r} is not finite")
        if kwargs:
            total = sum(terms.values(), torch.zeros(()))
            chk.report.ok(f"aux_losses returns finite scalars {sorted(terms)}")
    return total


def _check_qconv_state_roundtrip(chk: _Checker, conv: Any, inputs: Any,
                                 fresh_binarizer: Binarizer, *, binarize_input: bool) -> None:
    """A fresh `QConv2d` (built with ``fresh_binarizer``) loaded with ``conv``'s state dict
    computes the same output."""
    import torch

    from automl_bin.nn.qconv import QConv2d

    conv.eval()
    with torch.no_grad():
        expected = conv(inputs)
    clone = QConv2d(4, 8, 3, binarizer=fresh_binarizer, padding=1,
                    binarize_input=binarize_input)
    try:
        clone.load_state_dict(conv.state_dict())
    except Exception as exc:
        raise chk.fail(f"a QConv2d's state dict does not load into a fresh one: {exc}") from exc
    clone.eval()
    with torch.no_grad():
        chk.require(torch.allclose(clone(inputs), expected, atol=1e-6),
                    "a fresh QConv2d loaded with another's state dict computes another output; "
                    "keep the quantizer's state in parameters or buffers")
    chk.report.ok("QConv2d state dict round trip")


# --------------------------------------------------------------------------------------------
# search spaces
# --------------------------------------------------------------------------------------------


@attrs.define
class _SpaceCase:
    """What the search space checks share: the shrunk space, its network keys, the test batch
    and the genotype it sampled."""

    chk: _Checker
    space: SearchSpace
    network_keys: dict
    registry: Registry
    input_shape: tuple[int, int, int]
    num_classes: int
    x: Any = None
    y: Any = None
    sampled: Any = None


def check_search_space(cls: type, config: Any = None, *, input_shape: tuple[int, int, int] = (1, 8, 8),
                       num_classes: int = 3, binarizers: tuple[str, ...] = ("none", "xnor"),
                       plugins: PluginSet | None = None) -> ConformanceReport:
    """Check that the search space class ``cls`` keeps the search space contract.

    For each binarizer in ``binarizers`` (registered names; a space may refuse a binarizer with
    ValueError/UsageError, which is noted):

    - ``build_supernet`` returns a `Supernet` whose forward maps ``(2, *input_shape)`` to
      ``(2, num_classes)`` and whose ``arch_parameters()``/``weight_parameters()`` partition
      ``parameters()``; a backward pass reaches the weights (and the architecture parameters);
    - ``genotype()`` is a valid genotype of this space with a JSON round trip; ``op_weights()``
      has one column per op;
    - ``sample_genotype`` is valid and deterministic for a seed; ``build_network`` of it runs
      forward and backward;
    - ``set_fixed_architecture(g)`` runs the single path and ``set_fixed_architecture(None)``
      restores the exact mixture output;
    - a genotype of another space raises ValueError in ``validate_genotype`` and
      ``build_network``.

    Config fields ``layers``, ``init_channels``, ``nodes``, ``stem_multiplier`` and ``channels``
    are shrunk when present (see `automl_bin.testing.fixtures.SPACE_SHRINK`).
    """
    import torch

    chk = _Checker(_label("check_search_space", cls))
    chk.require(isinstance(cls, type) and issubclass(cls, SearchSpace),
                "is not a subclass of automl_bin.interfaces.SearchSpace")
    space = cls(shrink_config(_structure(cls.Config, config, "search_space"), SPACE_SHRINK))
    network = shrink_config(_structure(cls.NetworkConfig, None, "retrain.network"), NETWORK_SHRINK)
    network_keys = attrs.asdict(network) if attrs.has(type(network)) else {}
    _check_space_names(chk, space)
    case = _SpaceCase(chk, space, network_keys, _registry(plugins), input_shape, num_classes)
    torch.manual_seed(0)
    case.x = torch.randn(2, *input_shape)
    case.y = torch.arange(2) % num_classes
    case.sampled = _check_space_sampling(case)
    for bz_name in binarizers:
        _check_space_with_binarizer(case, bz_name)
    _check_space_refuses_unknown_option(case)
    _check_space_refuses_foreign_genotype(case)
    return chk.report


def _check_space_names(chk: _Checker, space: SearchSpace) -> None:
    ops = space.op_names
    chk.require(isinstance(ops, tuple) and ops and all(isinstance(o, str) for o in ops),
                f"op_names must be a non-empty tuple of str, got {ops!r}")
    chk.require(space.genotype_space,
                "genotype_space is empty: set it to the name genotypes of this space carry, so "
                "genotypes of other spaces are rejected")


def _check_space_sampling(case: _SpaceCase) -> Genotype:
    """``sample_genotype`` is valid and deterministic for a seed; returns the sample."""
    space, chk = case.space, case.chk
    rng_genotypes = (space.sample_genotype(random.Random(0)), space.sample_genotype(random.Random(0)))
    chk.require(rng_genotypes[0] == rng_genotypes[1],
                "sample_genotype(random.Random(0)) gives different genotypes on two calls; draw "
                "only from the rng you are given")
    sampled = _check_genotype(chk, rng_genotypes[0], space, "sample_genotype()")
    chk.report.ok("sample_genotype is valid and deterministic")
    return sampled


def _check_space_with_binarizer(case: _SpaceCase, bz_name: str) -> None:
    """The supernet and a network built with the binarizer ``bz_name`` (a refusal is noted)."""
    from automl_bin.interfaces.supernet import Supernet

    chk = case.chk
    binarizer = case.registry.create("binarizer", bz_name)
    where = f"with the {bz_name!r} binarizer"
    try:
        net = case.space.build_supernet(case.input_shape, case.num_classes, binarizer)
    except (ValueError, UsageError) as exc:
        chk.report.notes.append(f"build_supernet refuses the {bz_name!r} binarizer: {exc}")
        return
    chk.require(isinstance(net, Supernet), f"build_supernet {where} must return an "
                                           f"automl_bin.interfaces.supernet.Supernet, got "
                                           f"{type(net).__name__}")
    arch, weights = _check_supernet_partition(case, net, bz_name)
    _check_supernet_forward_backward(case, net, arch, weights, bz_name)
    _check_supernet_genotype(case, net, bz_name)
    _check_supernet_fixed_architecture(case, net, bz_name)
    _check_space_network(case, binarizer, bz_name)


def _check_supernet_partition(case: _SpaceCase, net: Any, bz_name: str) -> tuple[list, list]:
    """``arch_parameters()`` and ``weight_parameters()`` partition ``parameters()``; returns
    both lists."""
    chk = case.chk
    arch = list(net.arch_parameters())
    weights = list(net.weight_parameters())
    arch_ids, weight_ids = {id(p) for p in arch}, {id(p) for p in weights}
    all_ids = {id(p) for p in net.parameters()}
    chk.require(not arch_ids & weight_ids,
                "arch_parameters() and weight_parameters() share parameters")
    chk.require(arch_ids | weight_ids == all_ids,
                "arch_parameters() and weight_parameters() together are not parameters()")
    chk.report.ok(f"{bz_name}: {len(arch)} architecture / {len(weights)} weight parameters "
                  "partition parameters()")
    return arch, weights


def _check_supernet_forward_backward(case: _SpaceCase, net: Any, arch: list, weights: list,
                                     bz_name: str) -> None:
    import torch

    chk, where, num_classes = case.chk, f"with the {bz_name!r} binarizer", case.num_classes
    net.train()
    logits = net(case.x)
    chk.require(tuple(logits.shape) == (2, num_classes),
                f"the supernet {where} maps {(2, *case.input_shape)} to {tuple(logits.shape)}, "
                f"not {(2, num_classes)}")
    chk.require(bool(torch.isfinite(logits).all()), f"the supernet output {where} is not finite")
    torch.nn.functional.cross_entropy(logits, case.y).backward()
    chk.require(any(p.grad is not None for p in weights),
                f"no weight parameter gets a gradient {where}")
    if arch:
        chk.require(any(p.grad is not None for p in arch),
                    f"no architecture parameter gets a gradient {where} (the mixture must "
                    "depend on them)")
    chk.report.ok(f"{bz_name}: supernet forward/backward")


def _check_supernet_genotype(case: _SpaceCase, net: Any, bz_name: str) -> None:
    """``genotype()``, ``op_weights()`` and ``arch_entropy()`` of the supernet."""
    chk, space, ops = case.chk, case.space, case.space.op_names
    genotype = _check_genotype(chk, net.genotype(), space,
                               f"supernet.genotype() with the {bz_name!r} binarizer")
    chk.require(genotype.space == space.genotype_space,
                f"supernet.genotype() names space {genotype.space!r}, not "
                f"{space.genotype_space!r}")
    for cell, w in net.op_weights().items():
        chk.require(w.dim() == 2 and w.shape[1] == len(ops),
                    f"op_weights()[{cell!r}] has shape {tuple(w.shape)}; it must be (edges, "
                    f"{len(ops)})")
    chk.require(math.isfinite(net.arch_entropy()), "arch_entropy() is not finite")
    chk.report.ok(f"{bz_name}: genotype derivation and op weights")


def _check_supernet_fixed_architecture(case: _SpaceCase, net: Any, bz_name: str) -> None:
    """``set_fixed_architecture(g)`` runs the single path; ``(None)`` restores the mixture."""
    import torch

    chk = case.chk
    net.eval()
    with torch.no_grad():
        mixed = net(case.x)
        net.set_fixed_architecture(case.sampled)
        single = net(case.x)
        net.set_fixed_architecture(None)
        mixed_again = net(case.x)
    chk.require(tuple(single.shape) == (2, case.num_classes),
                f"with set_fixed_architecture(g) the supernet returns {tuple(single.shape)}")
    chk.require(torch.allclose(mixed, mixed_again, atol=1e-6),
                "set_fixed_architecture(None) does not restore the mixture output")
    chk.report.ok(f"{bz_name}: set_fixed_architecture round trip")


def _check_space_network(case: _SpaceCase, binarizer: Binarizer, bz_name: str) -> None:
    """``build_network`` of the sampled genotype runs forward and backward."""
    import torch

    chk, where = case.chk, f"with the {bz_name!r} binarizer"
    model = case.space.build_network(case.sampled, case.input_shape, case.num_classes, binarizer,
                                     case.network_keys)
    model.train()
    out = model(case.x)
    out = out[0] if isinstance(out, tuple) else out
    chk.require(tuple(out.shape) == (2, case.num_classes),
                f"build_network(sample) {where} maps {(2, *case.input_shape)} to "
                f"{tuple(out.shape)}")
    torch.nn.functional.cross_entropy(out, case.y).backward()
    chk.require(any(p.grad is not None for p in model.parameters()),
                f"build_network(sample) {where}: no parameter gets a gradient")
    chk.report.ok(f"{bz_name}: build_network forward/backward")


def _check_space_refuses_unknown_option(case: _SpaceCase) -> None:
    """Unsupported combination: an unknown supernet option raises ValueError."""
    chk = case.chk
    bogus = {"automl_bin_conformance_unknown_option": 1}
    try:
        case.space.build_supernet(case.input_shape, case.num_classes,
                                  case.registry.create("binarizer", "none"), bogus)
    except ValueError as exc:
        chk.require(str(exc).strip(), "build_supernet raised ValueError without a message for an "
                                      "unknown supernet option")
    except TypeError as exc:
        raise chk.fail("build_supernet does not take the options argument "
                       "(build_supernet(input_shape, num_classes, binarizer, options=None)); "
                       f"calling it with options raised {exc}") from exc
    else:
        raise chk.fail("build_supernet accepted the unknown supernet option "
                       f"{sorted(bogus)}; raise ValueError naming the supported ones "
                       "(supernet_options) so a strategy that needs them fails clearly")
    chk.report.ok("an unknown supernet option raises ValueError")


def _check_space_refuses_foreign_genotype(case: _SpaceCase) -> None:
    """A genotype of another space raises ValueError in ``validate_genotype`` and
    ``build_network``."""
    chk, space = case.chk, case.space
    foreign = Genotype(space=f"not_{space.genotype_space}", cells=dict(case.sampled.cells))
    for call, fn in (("validate_genotype", lambda: space.validate_genotype(foreign)),
                     ("build_network", lambda: space.build_network(
                         foreign, case.input_shape, case.num_classes,
                         case.registry.create("binarizer", "none"), case.network_keys))):
        try:
            fn()
        except ValueError:
            continue
        except Exception as exc:
            raise chk.fail(f"{call} of a genotype of another space raised {type(exc).__name__} "
                           f"({exc}), not ValueError") from exc
        raise chk.fail(f"{call} accepted a genotype of space {foreign.space!r}; it must raise "
                       "ValueError (call super().validate_genotype())")
    chk.report.ok("a genotype of another space raises ValueError")
