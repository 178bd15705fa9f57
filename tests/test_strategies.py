"""Strategies and estimators on a tiny supernet: they really search and really score."""

from __future__ import annotations

import random

import attrs
import pytest
import torch

from automl_bin.data import make_splits
from automl_bin.testing import RecordingReporter
from automl_bin.interfaces import EstimationEnv, SearchEnv
from automl_bin_plugins.binarizers.none import NoBinarizer
from automl_bin_plugins.darts_space.space import DartsConfig, DartsSpace
from automl_bin_plugins.datasets.synthetic import Synthetic
from automl_bin_plugins.estimators.retrain import RetrainConfig, RetrainEstimator
from automl_bin_plugins.estimators.supernet import SupernetEstimator
from automl_bin_plugins.strategies.darts import DartsConfig as DartsStrategyConfig
from automl_bin_plugins.strategies.darts import DartsStrategy
from automl_bin_plugins.strategies.random_search import RandomConfig, RandomSearch


@pytest.fixture(scope="module")
def splits():
    cfg = Synthetic.Config(num_classes=3, channels=1, image_size=8, train_size=96, test_size=48)
    data = Synthetic(cfg).load()
    return data, make_splits(data, batch_size=16, eval_batch_size=64, train_portion=0.5,
                             subset=None, seed=0, device=torch.device("cpu"))


def _space() -> DartsSpace:
    return DartsSpace(DartsConfig(layers=2, init_channels=4, nodes=2, stem_multiplier=1))


def _env(splits, tmp_path, estimator=None) -> SearchEnv:
    data, sp = splits
    return SearchEnv(space=_space(), binarizer=NoBinarizer(), input_shape=data.input_shape,
                     num_classes=data.num_classes, device=torch.device("cpu"), seed=0,
                     splits=sp, reporter=RecordingReporter(tmp_path), estimator=estimator)


@pytest.mark.parametrize("order", [1, 2])
def test_darts_epoch_updates_alphas_and_resumes(splits, tmp_path, order):
    """One epoch moves α; state_dict round-trips into a fresh strategy exactly."""
    torch.manual_seed(0)
    strategy = DartsStrategy(DartsStrategyConfig(epochs=2, max_steps=2, order=order))
    strategy.setup(_env(splits, tmp_path))
    a0 = [a.detach().clone() for a in strategy.supernet.arch_parameters()]
    metrics = strategy.run_epoch(0)
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "alpha_entropy"} <= set(metrics)
    assert any(not torch.equal(a, b) for a, b in zip(a0, strategy.supernet.arch_parameters()))
    other = DartsStrategy(DartsStrategyConfig(epochs=2, max_steps=2, order=order))
    other.setup(_env(splits, tmp_path))
    other.load_state_dict(strategy.state_dict())
    for a, b in zip(strategy.supernet.arch_parameters(), other.supernet.arch_parameters()):
        assert torch.equal(a, b)
    assert other.derive() == strategy.derive()


def test_darts_warmup_freezes_alphas(splits, tmp_path):
    strategy = DartsStrategy(DartsStrategyConfig(epochs=2, max_steps=2, warmup_epochs=1))
    strategy.setup(_env(splits, tmp_path))
    a0 = [a.detach().clone() for a in strategy.supernet.arch_parameters()]
    strategy.run_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(a0, strategy.supernet.arch_parameters()))


def test_random_search_keeps_the_best_sample(splits, tmp_path):
    """The returned genotype is the best-scored sample, and the history records every score."""
    torch.manual_seed(0)
    strategy = RandomSearch(RandomConfig(epochs=2, samples_per_epoch=3, max_steps=2,
                                         mode="sample_and_score"))
    strategy.setup(_env(splits, tmp_path, estimator=SupernetEstimator()))
    for epoch in range(2):
        metrics = strategy.run_epoch(epoch)
        assert "train_loss" in metrics and "best_val_acc" in metrics
    scores = [h["score"] for h in strategy.history]
    assert len(scores) == 6
    best = max(range(6), key=lambda i: (scores[i], -i))
    assert strategy.derive().to_dict()["cells"] == strategy.history[best]["genotype"]["cells"]
    resumed = RandomSearch(RandomConfig(epochs=2, samples_per_epoch=3, max_steps=2,
                                        mode="sample_and_score"))
    resumed.setup(_env(splits, tmp_path, estimator=SupernetEstimator()))
    resumed.load_state_dict(strategy.state_dict())
    assert resumed.derive() == strategy.derive()
    assert resumed.rng.random() == strategy.rng.random()


def test_supernet_estimator_scores_paths_and_restores_bn(splits, tmp_path):
    data, sp = splits
    space = _space()
    net = space.build_supernet(data.input_shape, data.num_classes, NoBinarizer())
    before = {n: b.clone() for n, b in net.named_buffers()}
    env = EstimationEnv(space=space, binarizer=NoBinarizer(), input_shape=data.input_shape,
                        num_classes=data.num_classes, device=torch.device("cpu"), seed=0,
                        splits=sp, reporter=RecordingReporter(tmp_path), supernet=net)
    est = SupernetEstimator().estimate(space.sample_genotype(random.Random(0)), env)
    assert 0.0 <= est.score <= 1.0 and "val_acc" in est.metrics
    assert all(torch.equal(before[n], b) for n, b in net.named_buffers())
    with pytest.raises(ValueError, match="needs a trained supernet"):
        SupernetEstimator().estimate(space.sample_genotype(random.Random(0)),
                                     attrs.evolve(env, supernet=None))


def test_retrain_estimator_learns_and_reports(splits, tmp_path):
    """Retraining a sampled genotype on learnable data beats chance and reports cost metrics."""
    data, sp = splits
    space = _space()
    rec = RecordingReporter(tmp_path, phase="retrain")
    env = EstimationEnv(space=space, binarizer=NoBinarizer(), input_shape=data.input_shape,
                        num_classes=data.num_classes, device=torch.device("cpu"), seed=0,
                        splits=sp, fit="train_full", score="test", reporter=rec,
                        network={"layers": 2, "init_channels": 8, "stem_multiplier": 1})
    cfg = RetrainConfig(epochs=4, lr=0.05, batch_size=16)
    est = RetrainEstimator(cfg).estimate(space.sample_genotype(random.Random(3)), env)
    assert est.metrics["test_acc"] > 0.6  # 3 classes: chance is 0.33
    assert est.metrics["params"] == sum(p.numel() for p in est.model.parameters())
    assert est.metrics["flops"] > 0 and est.metrics["bops"] == 0
    assert [e for e, _ in rec.epochs] == [0, 1, 2, 3]
    assert [c.name for c in rec.checkpoints] == ["retrain_checkpoint.pt"] * 4


def test_two_step_and_teacher_retrain(splits, tmp_path):
    """Two-step training runs step 1 with real weights, then binarizes; a real teacher trains
    first and the run reports the stages in order."""
    from automl_bin.nn.qconv import QConv2d
    from automl_bin_plugins.binarizers.xnor import XnorBinarizer

    data, sp = splits
    space = DartsSpace(DartsConfig(layers=2, init_channels=4, nodes=2, stem_multiplier=1,
                                   ops="binary"))
    rec = RecordingReporter(tmp_path, phase="retrain")
    env = EstimationEnv(space=space, binarizer=XnorBinarizer(), input_shape=data.input_shape,
                        num_classes=data.num_classes, device=torch.device("cpu"), seed=0,
                        splits=sp, fit="train_full", score="test", reporter=rec,
                        network={"layers": 2, "init_channels": 4, "stem_multiplier": 1},
                        create=lambda kind, name, config=None: NoBinarizer())
    cfg = RetrainConfig(epochs=1, step1_epochs=1, two_step=True, teacher="real",
                        teacher_epochs=1, max_steps=2, optimizer="adamw", lr=1e-3)
    est = RetrainEstimator(cfg).estimate(space.sample_genotype(random.Random(1)), env)
    stages = [m["stage"] for _, m in rec.epochs]
    assert stages == [0.0, 1.0, 2.0] and [e for e, _ in rec.epochs] == [0, 1, 2]
    assert "teacher_train_loss" in rec.epochs[0][1]
    convs = [m for m in est.model.modules() if isinstance(m, QConv2d)]
    assert all(c.binarize_weight for c in convs)  # step 2 ends fully binary
    assert est.metrics["model_bits"] < 32 * est.metrics["params"]
    assert est.metrics["memory_saving"] > 1.0


class _KeepingReporter(RecordingReporter):
    """Keeps a weights_only copy of every checkpoint the estimator saves."""

    def __init__(self, work_dir) -> None:
        super().__init__(work_dir, phase="retrain")
        self.states: list[dict] = []

    def save_checkpoint(self, state, name=None):
        path = super().save_checkpoint(state, name)
        self.states.append(torch.load(path, weights_only=True))
        return path


def test_retrain_resumes_after_any_epoch_of_any_stage(splits, tmp_path):
    """Teacher, step 1 and step 2, two epochs each: continuing from the checkpoint of any epoch
    reports the remaining epochs and ends with the weights and score of the uninterrupted run."""
    from automl_bin_plugins.binarizers.xnor import XnorBinarizer

    data, sp = splits
    space = DartsSpace(DartsConfig(layers=2, init_channels=4, nodes=2, stem_multiplier=1,
                                   ops="binary"))
    genotype = space.sample_genotype(random.Random(1))
    cfg = RetrainConfig(epochs=2, step1_epochs=2, two_step=True, teacher="real",
                        teacher_epochs=2, max_steps=2, optimizer="adamw", lr=1e-3,
                        drop_path_prob=0.2)

    def estimate(reporter, resume=None):
        env = EstimationEnv(space=space, binarizer=XnorBinarizer(), input_shape=data.input_shape,
                            num_classes=data.num_classes, device=torch.device("cpu"), seed=0,
                            splits=sp, fit="train_full", score="test", reporter=reporter,
                            network={"layers": 2, "init_channels": 4, "stem_multiplier": 1},
                            create=lambda kind, name, config=None: NoBinarizer(), resume=resume)
        return RetrainEstimator(cfg).estimate(genotype, env)

    straight_rec = _KeepingReporter(tmp_path / "straight")
    straight = estimate(straight_rec)
    assert [s["stage"] for s in straight_rec.states] == ["teacher"] * 2 + ["step1"] * 2 + ["final"] * 2
    drop = lambda m: {k: v for k, v in m.items() if k != "epoch_seconds"}  # noqa: E731
    for k, state in enumerate(straight_rec.states[:-1]):
        rec = RecordingReporter(tmp_path / f"resumed{k}", phase="retrain")
        resumed = estimate(rec, resume=state)
        assert [e for e, _ in rec.epochs] == list(range(k + 1, 6)), k
        for (_, got), (_, want) in zip(rec.epochs, straight_rec.epochs[k + 1:]):
            assert drop(got) == pytest.approx(drop(want), abs=1e-6), k
        assert resumed.metrics["test_acc"] == straight.metrics["test_acc"]
        assert resumed.metrics["test_loss"] == pytest.approx(straight.metrics["test_loss"], abs=1e-6)
        for (name, a), b in zip(straight.model.state_dict().items(),
                                resumed.model.state_dict().values()):
            assert torch.allclose(a.float(), b.float(), atol=1e-6), (k, name)
    bad = dict(straight_rec.states[0], stage="step9")
    with pytest.raises(ValueError, match="Delete it from the run folder"):
        estimate(RecordingReporter(tmp_path / "bad", phase="retrain"), resume=bad)


def test_pc_darts_moves_alphas_and_edge_weights(splits, tmp_path):
    """PC-DARTS updates α and the edge logits after warm-up, on a partial-channel supernet."""
    from automl_bin_plugins.strategies.pc_darts import PcDartsConfig, PcDartsStrategy

    data, sp = splits
    space = DartsSpace(DartsConfig(layers=2, init_channels=4, nodes=2, stem_multiplier=1))
    env = SearchEnv(space=space, binarizer=NoBinarizer(), input_shape=data.input_shape,
                    num_classes=data.num_classes, device=torch.device("cpu"), seed=0,
                    splits=sp, reporter=RecordingReporter(tmp_path))
    strategy = PcDartsStrategy(PcDartsConfig(epochs=2, max_steps=2, warmup_epochs=1,
                                             partial_k=2))
    assert strategy.check_compatible(space, NoBinarizer()) is None
    strategy.setup(env)
    net = strategy.supernet
    assert net.partial_k == 2 and len(net.arch_parameters()) == 4
    before = [p.detach().clone() for p in net.arch_parameters()]
    strategy.run_epoch(0)  # warm-up: α frozen
    assert all(torch.equal(a, b) for a, b in zip(before, net.arch_parameters()))
    strategy.run_epoch(1)
    assert all(not torch.equal(a, b) for a, b in zip(before, net.arch_parameters()))
    space.validate_genotype(strategy.derive())
