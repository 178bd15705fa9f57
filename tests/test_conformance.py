"""The conformance suite (`automl_bin.testing`) over every built-in component, and its teeth.

Every strategy, binarizer and search space automl-bin registers passes the same checks plugin
authors run with ``check_strategy``/``check_binarizer``/``check_search_space``; deliberately
broken components fail them with a message naming the broken rule.
"""

from __future__ import annotations

import random

import pytest

from automl_bin.interfaces import Binarizer, Genotype, Strategy
from automl_bin.plugins import load_plugins
from automl_bin.testing import check_binarizer, check_search_space, check_strategy

BUILTINS = load_plugins(allow={"automl-bin"}, deny=set()).registry
CHECKS = {"strategy": check_strategy, "binarizer": check_binarizer,
          "search_space": check_search_space}


def _builtins(kind: str) -> list:
    return [pytest.param(e.cls, id=e.name) for e in BUILTINS
            if e.kind == kind and e.distribution == "automl-bin"]


def test_every_kind_has_builtins():
    for kind in CHECKS:
        assert _builtins(kind), kind


@pytest.mark.parametrize("cls", _builtins("strategy"))
def test_builtin_strategy_conforms(cls):
    report = check_strategy(cls)
    assert any("changes the architecture" in c for c in report.checks)


@pytest.mark.parametrize("cls", _builtins("binarizer"))
def test_builtin_binarizer_conforms(cls):
    report = check_binarizer(cls)
    assert any("QConv2d forward and backward" in c for c in report.checks)


@pytest.mark.parametrize("cls", _builtins("search_space"))
def test_builtin_search_space_conforms(cls):
    report = check_search_space(cls)
    assert any("set_fixed_architecture" in c for c in report.checks)


#: non-default configurations of built-ins that take other code paths
VARIANTS = [
    ("strategy", "darts", {"order": 2}),
    ("strategy", "random", {"mode": "sample_and_score", "estimator": "retrain",
                            "estimator_params": {"epochs": 1, "max_steps": 1}}),
    ("strategy", "random", {"mode": "sample_and_score"}),
    ("binarizer", "xnor", {"act_scale": True, "weight_grad": "xnor", "activation": "ste"}),
    ("binarizer", "recon", {"fold_into_backward": True}),
    ("binarizer", "recon", {"center_momentum": 0.5, "activation": "ste"}),
    ("search_space", "darts", {"ops": "binary"}),
]


@pytest.mark.parametrize("kind, name, config", VARIANTS,
                         ids=[f"{k}-{n}-{'-'.join(c)}" for k, n, c in VARIANTS])
def test_builtin_variants_conform(kind, name, config):
    CHECKS[kind](BUILTINS.get(kind, name).cls, config)


# --------------------------------------------------------------------------------------------
# the suite catches broken components
# --------------------------------------------------------------------------------------------


class _Idle(Strategy):
    """Never changes anything and does not say why."""

    def num_epochs(self):
        return 1

    def run_epoch(self, epoch):
        return {"val_acc": 0.5}

    def derive(self):
        return self.env.space.sample_genotype(random.Random(0))


class _DeclaredIdle(_Idle):
    changes_architecture_each_epoch = False
    why_architecture_may_not_change = "it evaluates one fixed architecture (a baseline)"


def test_idle_strategy_fails_naming_the_problem():
    with pytest.raises(AssertionError) as info:
        check_strategy(_Idle)
    message = str(info.value)
    assert message.startswith("check_strategy(_Idle): one search epoch")
    assert "left the architecture state unchanged" in message
    assert "why_architecture_may_not_change" in message


def test_idle_strategy_that_declares_why_passes():
    report = check_strategy(_DeclaredIdle)
    assert any("fixed architecture" in note for note in report.notes)


class _Amnesiac(Strategy):
    """Searches, but forgets its decision across a checkpoint (state_dict is empty)."""

    def setup(self, env):
        super().setup(env)
        self.rng = random.Random(env.seed)
        self.current = env.space.sample_genotype(self.rng)

    def num_epochs(self):
        return 2

    def run_epoch(self, epoch):
        self.current = self.env.space.sample_genotype(self.rng)
        return {"val_acc": 0.5}

    def derive(self):
        return self.current


def test_strategy_that_does_not_resume_fails():
    with pytest.raises(AssertionError, match="load_state_dict"):
        check_strategy(_Amnesiac)


class _NanMetrics(_Amnesiac):
    def run_epoch(self, epoch):
        super().run_epoch(epoch)
        return {"val_acc": float("nan")}


def test_non_finite_metrics_fail():
    with pytest.raises(AssertionError, match="'val_acc' = nan, which is not finite"):
        check_strategy(_NanMetrics)


class _NeedsEstimatorSilently(_Amnesiac):
    requires_estimator = True

    def run_epoch(self, epoch):
        return {"score": self.env.estimator.estimate(self.current, None).score}


def test_required_estimator_without_clear_error_fails():
    with pytest.raises(AssertionError, match="requires_estimator = True.*AttributeError"):
        check_strategy(_NeedsEstimatorSilently)


def test_foreign_genotype_from_derive_fails():
    class Foreign(_DeclaredIdle):
        def derive(self):
            g = super().derive()
            return Genotype(space="elsewhere", cells=dict(g.cells))

    with pytest.raises(AssertionError, match="genotype the search space rejects"):
        check_strategy(Foreign)


def _soft_sign_binarizer():
    class SoftSign(Binarizer):
        """Claims 1 bit but returns tanh: not binary."""

        weight_bits = 1
        activation_bits = 1

        def weight_quantizer(self, out_channels):
            import torch

            return torch.nn.Tanh()

        def activation_quantizer(self):
            import torch

            return torch.nn.Tanh()

    return SoftSign


def test_binarizer_with_non_binary_values_fails():
    with pytest.raises(AssertionError, match=r"check_binarizer\(.*SoftSign\): weight_bits = 1, "
                                             r"but output channel 0"):
        check_binarizer(_soft_sign_binarizer())


def test_search_space_without_genotype_space_fails():
    darts = BUILTINS.get("search_space", "darts").cls

    class Nameless(darts):
        genotype_space = ""

    with pytest.raises(AssertionError, match="genotype_space is empty"):
        check_search_space(Nameless)


def test_wrong_class_kind_is_rejected():
    with pytest.raises(AssertionError, match="not a subclass of automl_bin.interfaces.Strategy"):
        check_strategy(int)


def test_one_bit_only_strategies_are_checked_with_a_one_bit_binarizer():
    for name in ("cp_nas", "dcp_nas"):
        report = check_strategy(BUILTINS.get("strategy", name).cls)
        assert "checked with the 'xnor' binarizer" in report.notes, (name, report.notes)
        assert any("('none') is refused by check_compatible and setup" in c
                   for c in report.checks), (name, report.checks)


class _RefusesOnlyOnPaper(_DeclaredIdle):
    """check_compatible refuses real-valued binarizers, but setup() lets them through."""

    def check_compatible(self, space, binarizer):
        return None if binarizer.is_binary else "it needs a 1-bit binarizer; use 'xnor'"


def test_refusal_that_setup_does_not_enforce_fails():
    with pytest.raises(AssertionError, match=r"refuses the 'none' binarizer .* but setup\(\) "
                                             r"accepts it"):
        check_strategy(_RefusesOnlyOnPaper)
