"""Operation-space reduction and the sampling strategies (docs/algorithms.md §BNAS and BNAS2)."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from automl_bin.data import make_splits
from automl_bin.interfaces import SearchEnv
from automl_bin.search.pruning import OperationPruner, softmax, total_trials
from automl_bin_plugins.binarizers.none import NoBinarizer
from automl_bin_plugins.binarizers.recon import ReconBinarizer, ReconConfig
from automl_bin_plugins.binarizers.xnor import XnorBinarizer
from automl_bin_plugins.darts_space.derive import edge_index
from automl_bin_plugins.darts_space.space import DartsConfig, DartsSpace
from automl_bin_plugins.datasets.synthetic import Synthetic
from automl_bin_plugins.estimators.supernet import SupernetEstimator, SupernetEstimatorConfig
from automl_bin_plugins.strategies.bnas import BnasConfig, BnasStrategy
from automl_bin_plugins.strategies.cp_nas import CpNasConfig, CpNasStrategy, cp_indicator
from automl_bin_plugins.strategies.random_search import RandomConfig, RandomSearch

OPS = ("skip_connect", "sep_conv_3x3", "none")


class _Recorder:
    """A minimal Reporter that remembers metrics, JSON documents and artifacts."""

    phase = "search"

    def __init__(self, tmp: Path) -> None:
        self.work_dir = tmp
        self.metrics: list[tuple[int, dict]] = []
        self.json: dict[str, object] = {}
        self.artifacts: list[Path] = []

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))

    def log_epoch(self, epoch, metrics):
        pass

    def save_checkpoint(self, state, name="checkpoint.pt"):
        return self.work_dir / name

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append(Path(path))

    def log_json(self, name, data):
        path = self.work_dir / name
        path.write_text(json.dumps(data))
        self.json[name] = data
        return path

    def track(self, iterable, total, description):
        return iter(iterable)

    def info(self, message):
        pass


def _create(kind, name, config=None):
    if (kind, name) == ("binarizer", "none"):
        return NoBinarizer(config)
    if (kind, name) == ("estimator", "supernet"):
        return SupernetEstimator(config)
    raise KeyError((kind, name))


@pytest.fixture(scope="module")
def splits():
    cfg = Synthetic.Config(num_classes=3, channels=1, image_size=8, train_size=96, test_size=48)
    data = Synthetic(cfg).load()
    return data, make_splits(data, batch_size=16, eval_batch_size=64, train_portion=0.5,
                             subset=None, seed=0, device=torch.device("cpu"))


def _space(ops=OPS, style="binary", init_channels=4) -> DartsSpace:
    return DartsSpace(DartsConfig(layers=2, init_channels=init_channels, nodes=2,
                                  stem_multiplier=1, ops=list(ops), op_style=style))


def _env(splits, tmp_path, binarizer, space=None, estimator=None) -> SearchEnv:
    data, sp = splits
    return SearchEnv(space=space or _space(), binarizer=binarizer, input_shape=data.input_shape,
                     num_classes=data.num_classes, device=torch.device("cpu"), seed=0,
                     splits=sp, reporter=_Recorder(tmp_path), estimator=estimator,
                     create=_create)


def _pruner(ops=("a", "b", "c", "d"), nodes=2, kinds=("normal", "reduce"), **kw):
    return OperationPruner(op_names=ops, edges={k: edge_index(nodes) for k in kinds}, space="darts",
                           **kw)


# -- the core machinery -------------------------------------------------------------------------
def test_total_trials():
    assert total_trials(8, 3) == 105 == 35 * 3  # docs/algorithms.md §BNAS and BNAS2: 35T
    assert total_trials(3, 1) == 5 and total_trials(2, 2) == 4
    assert _pruner(trials=2).total_trials() == total_trials(4, 2)


def test_schedule_reduces_to_one_op_per_edge_after_k_minus_1_rounds():
    pruner = _pruner(trials=2)
    rng, rounds = random.Random(0), []
    for _ in range(total_trials(4, 2)):
        arch = pruner.next_architecture(rng)
        entry = pruner.complete(arch, rng.random())
        if entry is not None:
            rounds.append(entry)
    assert pruner.finished and len(rounds) == 4 - 1 == pruner.round
    assert [r["K"] for r in rounds] == [4, 3, 2]
    assert all(n == 1 for counts in pruner.remaining_counts().values() for n in counts)
    assert pruner.records == total_trials(4, 2) and pruner.mean_remaining() == 1.0
    with pytest.raises(RuntimeError, match="finished"):
        pruner.trial_schedule(rng)


def test_permutation_samples_every_remaining_op_once_per_trial():
    pruner = _pruner(ops=("a", "b", "c", "d", "e"), trials=1)
    rng = random.Random(1)
    for _ in range(3):  # K = 5, 4, 3
        schedule = pruner.trial_schedule(rng)
        assert len(schedule) == pruner.current_k
        for kind, cands in pruner.candidates.items():
            for edge, ops in enumerate(cands):
                assert sorted(a[kind][edge] for a in schedule) == ops  # each once
        for arch in schedule:
            pruner.record(arch, rng.random())
        pruner.prune_round()


def test_each_round_removes_the_lowest_indicator():
    """Hand-made rewards: on edge 0 op c is worst, on edge 1 op b; other edges tie."""
    pruner = _pruner(ops=("a", "b", "c"), nodes=1, kinds=("normal",), trials=1)
    rewards = {0.9: [0, 2], 0.5: [1, 0], 0.1: [2, 1]}  # reward -> op on (edge 0, edge 1)
    for reward, ops in rewards.items():
        pruner.record({"normal": ops}, reward)
    pruner.record({"normal": [0, 2]}, 0.9)  # a second pull, the same mean
    entry = pruner.prune_round()
    assert entry["removed"]["normal"] == ["c", "b"]
    assert pruner.remaining()["normal"] == [["a", "b"], ["a", "c"]]
    # e = softmax of the mean rewards (Eq. 4.16)
    expected = softmax([0.9, 0.5, 0.1])
    assert entry["indicators"]["normal"][0] == pytest.approx(dict(zip("abc", expected)))
    # ties: the later op index leaves
    tie = _pruner(ops=("a", "b", "c"), nodes=1, kinds=("normal",))
    for ops in ([0, 1], [1, 2], [2, 0]):
        tie.record({"normal": ops}, 0.5)
    assert tie.prune_round()["removed"]["normal"] == ["c", "c"]


def test_ucb_indicator_formula():
    pruner = _pruner(ops=("a", "b", "c"), nodes=1, kinds=("normal",), indicator="ucb")
    pulls = [([0, 0], 0.8), ([0, 1], 0.4), ([1, 1], 0.6), ([0, 0], 0.2)]
    for ops, reward in pulls:
        pruner.record({"normal": ops}, reward)
    n_total = 4
    s = pruner.scores("normal", 0)
    assert s[0] == pytest.approx((0.8 + 0.4 + 0.2) / 3 + math.sqrt(2 * math.log(n_total) / 3))
    assert s[1] == pytest.approx(0.6 + math.sqrt(2 * math.log(n_total) / 1))
    assert s[2] == math.inf  # never tried: not pruned before it is
    assert pruner.normalised("normal", 0) == {0: 0.0, 1: 0.0, 2: 1.0}
    lcb = pruner.lcb("normal", 1)
    assert lcb[1] == pytest.approx((0.4 + 0.6) / 2 - math.sqrt(2 * math.log(n_total) / 2))
    assert lcb[2] == -math.inf
    entry = pruner.prune_round()  # the untried op survives; the lowest UCB leaves
    assert entry["removed"]["normal"][0] == "a"
    assert entry["scores"]["normal"][0]["c"] is None  # +inf is stored JSON-safe


def _two_rounds(window: str) -> OperationPruner:
    """Round 1: op a earns 0.9, b 0.5, c 0.1 on both edges; prune (c leaves). Round 2 (one
    architecture so far): a earns 0.2, b 0.4."""
    pruner = _pruner(ops=("a", "b", "c"), nodes=1, kinds=("normal",), window=window)
    for op, reward in ((0, 0.9), (1, 0.5), (2, 0.1), (0, 0.9)):
        pruner.record({"normal": [op, op]}, reward)
    assert pruner.prune_round()["removed"]["normal"] == ["c", "c"]
    pruner.record({"normal": [0, 1]}, 0.2)
    pruner.record({"normal": [1, 0]}, 0.4)
    return pruner


def test_round_window_is_the_default():
    assert _pruner().window == "round"
    assert BnasConfig().reward_window == "round" == CpNasConfig().reward_window


def test_round_window_ranks_by_the_current_round_only():
    """Eq. 4.16's z̄ = (1/T)·Σ_t over this round: the mean, n_k and the UCB's N restart after
    every prune; the "all" window keeps the whole search."""
    now = _two_rounds("round")
    assert now.mean_reward("normal", 0, 0) == pytest.approx(0.2)
    assert now.pulls("normal", 0, 0) == 1 and now.window_records == 2
    assert now.prune_round()["removed"]["normal"] == ["a", "b"]  # a is worst this round
    assert now.window_records == 0 and now.pulls("normal", 0, 1) == 0
    assert now.scores("normal", 0) == {1: math.inf}  # nothing tried yet in round 3
    whole = _two_rounds("all")
    assert whole.mean_reward("normal", 0, 0) == pytest.approx((0.9 + 0.9 + 0.2) / 3)
    assert whole.pulls("normal", 0, 0) == 3 and whole.window_records == 6
    assert whole.prune_round()["removed"]["normal"] == ["b", "b"]  # a's round-1 credit wins


def test_ucb_bonus_counts_the_window():
    now, whole = _two_rounds("round"), _two_rounds("all")
    for p in (now, whole):
        p.indicator = "ucb"
    bonus = math.sqrt(2 * math.log(2) / 1)  # N = 2 architectures this round, n_a = 1
    assert now.scores("normal", 0)[0] == pytest.approx(0.2 + bonus)
    assert now.lcb("normal", 1)[1] == pytest.approx(0.2 - bonus)
    bonus_all = math.sqrt(2 * math.log(6) / 3)  # N = 6 over the search, n_a = 3
    assert whole.scores("normal", 0)[0] == pytest.approx((0.9 + 0.9 + 0.2) / 3 + bonus_all)


def test_round_window_survives_a_state_round_trip():
    pruner = _two_rounds("round")
    other = _pruner(ops=("a", "b", "c"), nodes=1, kinds=("normal",))
    other.load_state_dict(json.loads(json.dumps(pruner.state_dict())))
    assert other.window_records == 2 and other.scores("normal", 0) == pruner.scores("normal", 0)


def test_lcb_softmax_draws_only_remaining_ops():
    pruner = _pruner(ops=("a", "b", "c", "d"), sampling="lcb_softmax", indicator="ucb")
    rng = random.Random(2)
    for arch in pruner.trial_schedule(rng):
        pruner.record(arch, rng.random())
    pruner.prune_round()
    for _ in range(20):
        schedule = pruner.trial_schedule(rng)
        assert len(schedule) == 3
        for arch in schedule:
            for kind, ops in arch.items():
                for edge, op in enumerate(ops):
                    assert op in pruner.candidates[kind][edge]
    # untried ops (LCB = -inf) take all the probability
    fresh = _pruner(ops=("a", "b", "c"), nodes=1, kinds=("normal",), sampling="lcb_softmax")
    fresh.record({"normal": [0, 0]}, 1.0)
    draws = Counter(fresh.sample_architecture(rng)["normal"][0] for _ in range(50))
    assert set(draws) <= {1, 2}


def test_genotype_rule_for_pruned_edges():
    """Survivors on 'none' are skipped; the top 2 by last-round e are kept; an all-none node keeps
    its strongest edge so the genotype stays valid."""
    ops = ("skip_connect", "sep_conv_3x3", "none")
    pruner = _pruner(ops=ops, nodes=3, kinds=("normal", "reduce"))
    # edges: (0,2) (1,2) | (0,3) (1,3) (2,3) | (0,4) (1,4) (2,4) (3,4)
    survivors = [2, 0, 1, 0, 2, 2, 2, 2, 2]
    last_e = [0.9, 0.6, 0.7, 0.8, 0.99, 0.5, 0.7, 0.6, 0.55]
    for kind in ("normal", "reduce"):
        pruner.candidates[kind] = [[s] for s in survivors]
        for edge, (s, e) in enumerate(zip(survivors, last_e)):
            pruner.last_indicator[kind][edge] = [e if m == s else None for m in range(3)]
    genotype = pruner.genotype()
    cell = genotype.cell("normal")
    assert [(e.op, e.source, e.target) for e in cell.edges] == [
        ("skip_connect", 1, 2),                             # node 2: (0,2) is none
        ("sep_conv_3x3", 0, 3), ("skip_connect", 1, 3),     # node 3: none (2,3) skipped
        ("none", 1, 4),                                     # node 4: all none, strongest kept
    ]
    assert list(cell.concat) == [2, 3, 4]
    DartsSpace(DartsConfig(nodes=3, ops=list(ops))).validate_genotype(genotype)


def test_pruner_state_round_trip_is_plain_data():
    pruner = _pruner(trials=2, indicator="ucb")
    rng = random.Random(3)
    for _ in range(9):  # one round (2 trials of 4) and one architecture of the next
        pruner.complete(pruner.next_architecture(rng), rng.random())
    state = json.loads(json.dumps(pruner.state_dict()))  # plain data only
    other = _pruner(trials=2, indicator="ucb")
    other.load_state_dict(state)
    assert other.remaining() == pruner.remaining() and other.round == 1
    assert other.schedule == pruner.schedule and other.position == pruner.position == 1
    assert other.indicator_matrix() == pruner.indicator_matrix()
    with pytest.raises(ValueError, match="ops"):
        _pruner(ops=("a", "b", "c")).load_state_dict(state)


def test_pruner_validates_its_configuration():
    with pytest.raises(ValueError, match="unknown op"):
        _pruner(exclude=("zz",))
    with pytest.raises(ValueError, match="K0 = 5"):
        _pruner(k0=5)
    p = _pruner(ops=("a", "b", "none", "c"), exclude=("none",), k0=2)
    assert p.remaining()["normal"][0] == ["a", "b"] and p.initial_k == 2


# -- CP-NAS indicator ---------------------------------------------------------------------------
def test_cp_indicator_formula():
    assert cp_indicator(0.8, 0.6, 0.5) == pytest.approx(0.5 * (0.8 - 0.6) + 0.6)
    assert cp_indicator(0.8, 0.6, 0.0) == 0.6  # Child alone
    assert cp_indicator(0.8, 0.6, 1.0) == pytest.approx(0.8)  # Parent alone


@pytest.mark.parametrize("beta_p", [0.0, 1.0])
def test_cp_nas_ranking_by_beta(splits, tmp_path, beta_p):
    """β_P = 0 ranks ops by the Child's accuracy alone, β_P = 1 by the Parent's; here they
    disagree, so the removed ops differ."""
    strategy = CpNasStrategy(CpNasConfig(trials=1, partial_k=1, beta_p=beta_p))
    strategy.setup(_env(splits, tmp_path, ReconBinarizer(), space=_space(style="real")))
    rng = random.Random(4)
    schedule = strategy.pruner.trial_schedule(rng)
    strategy.pruner.schedule, strategy.pruner.position = schedule, 0
    a_child = [0.7, 0.5, 0.3]
    a_parent = [0.2, 0.4, 0.9]
    entry = None
    for i, arch in enumerate(schedule):
        z, entry = strategy.record_accuracies(arch, a_parent[i], a_child[i])
        assert z == pytest.approx(cp_indicator(a_parent[i], a_child[i], beta_p))
    assert entry is not None  # trials = 1: the trial ends the round
    worst = min(range(3), key=lambda i: a_child[i] if beta_p == 0 else a_parent[i])
    for kind, removed in entry["removed"].items():
        assert removed == [OPS[op] for op in schedule[worst][kind]]
    assert strategy.env.reporter.metrics[0][0] == 1  # logged at step = round


def test_cp_nas_requires_a_one_bit_binarizer():
    strategy = CpNasStrategy()
    assert "1-bit" in strategy.check_compatible(_space(), NoBinarizer())
    assert strategy.check_compatible(_space(), ReconBinarizer()) is None
    assert "K0 = 9" in CpNasStrategy(CpNasConfig(K0=9)).check_compatible(_space(), XnorBinarizer())


# -- full tiny searches through the Strategy API -----------------------------------------------
def _run(strategy, env, stop=None):
    strategy.setup(env)
    epochs = strategy.num_epochs()
    out = []
    for epoch in range(epochs if stop is None else stop):
        out.append(dict(strategy.run_epoch(epoch)))
    return out


def test_bnas_full_search_and_resume(splits, tmp_path):
    torch.manual_seed(0)
    space = _space()
    cfg = BnasConfig(trials=1, partial_k=2, max_steps=1, val_batches=1, indicator="ucb")
    strategy = BnasStrategy(cfg)
    env = _env(splits, tmp_path, XnorBinarizer(), space=space)
    metrics = _run(strategy, env, stop=4)
    assert strategy.num_epochs() == total_trials(3, 1) == 5
    assert {"train_loss", "train_acc", "val_acc", "remaining_ops", "round"} <= set(metrics[0])
    assert [m["remaining_ops"] for m in metrics] == [3, 3, 2, 2]
    assert [m["round"] for m in metrics] == [0, 0, 1, 1]
    # resume mid-trial of round 2: same candidates, same next architecture, same weights
    state = strategy.state_dict()
    other = BnasStrategy(cfg)
    other.setup(_env(splits, tmp_path, XnorBinarizer(), space=space))
    other.load_state_dict(state)
    assert other.pruner.remaining() == strategy.pruner.remaining()
    assert other.pruner.next_architecture(other.rng) == strategy.pruner.next_architecture(
        strategy.rng)
    for a, b in zip(other.trainees[0].net.state_dict().values(),
                    strategy.trainees[0].net.state_dict().values()):
        assert torch.equal(a, b)
    # finish the search
    last = strategy.run_epoch(4)
    assert last["remaining_ops"] == 1 and strategy.pruner.finished
    genotype = strategy.derive()
    space.validate_genotype(genotype)
    for kind, cands in strategy.pruner.candidates.items():
        survivors = {edge_index(2)[r]: OPS[c[0]] for r, c in enumerate(cands)}
        for e in genotype.cell(kind).edges:
            assert survivors[(e.source, e.target)] == e.op
    weights = strategy.op_weights()
    assert set(weights) == {"normal", "reduce"}
    assert all(len(w) == 5 and len(w[0]) == 3 for w in weights.values())
    assert all(sorted(row) == [0.0, 0.0, 1.0] for w in weights.values() for row in w)
    rec = env.reporter
    assert [step for step, _ in rec.metrics] == [1, 2]
    final = strategy.final_metrics()
    assert final["prune_rounds"] == 2
    history = rec.json["pruning_history.json"]
    assert [r["K"] for r in history["rounds"]] == [3, 2] and history["indicator"] == "ucb"
    assert any(p.name == "remaining_ops.png" and p.exists() for p in rec.artifacts)


def test_cp_nas_full_search(splits, tmp_path):
    torch.manual_seed(0)
    space = _space(init_channels=8)
    cfg = CpNasConfig(trials=1, partial_k=2, max_steps=1, val_batches=1, beta_p=0.5)
    binarizer = ReconBinarizer(ReconConfig(lambda_rec=1e-2, mu_cmp=1e-2))
    strategy = CpNasStrategy(cfg)
    env = _env(splits, tmp_path, binarizer, space=space)
    metrics = _run(strategy, env, stop=2)
    state = strategy.state_dict()
    for epoch in range(2, strategy.num_epochs()):
        metrics.append(dict(strategy.run_epoch(epoch)))
    assert len(metrics) == 5 and strategy.pruner.finished
    for m in metrics:
        assert {"parent_val_acc", "child_val_acc", "z", "recon_loss", "compactness_loss",
                "remaining_ops"} <= set(m)
        assert m["z"] == pytest.approx(cp_indicator(m["parent_val_acc"], m["child_val_acc"], 0.5))
        assert m["recon_loss"] > 0 and m["compactness_loss"] > 0
    assert strategy.parent.binarizer.weight_bits == 32
    assert strategy.child.binarizer is binarizer
    space.validate_genotype(strategy.derive())
    # the round-trip mid-search (after the first trial's second sample) restores the schedule
    other = CpNasStrategy(cfg)
    other.setup(_env(splits, tmp_path, binarizer, space=space))
    other.load_state_dict(state)
    assert other.pruner.round == 0 and other.pruner.position == 2
    assert other.pruner.remaining() == {k: [list(OPS)] * 5 for k in ("normal", "reduce")}
    strategy.final_metrics()
    assert "pruning_history.json" in env.reporter.json


def test_random_sampling_mode_credits_sampled_ops_and_derives_best_means(splits, tmp_path):
    torch.manual_seed(0)
    space = _space(style="real")
    estimator = SupernetEstimator(SupernetEstimatorConfig(max_batches=1))
    cfg = RandomConfig(epochs=4, max_steps=1)
    assert cfg.mode == "sampling"
    strategy = RandomSearch(cfg)
    env = _env(splits, tmp_path, XnorBinarizer(), space=space, estimator=estimator)
    metrics = _run(strategy, env)
    assert len(strategy.history) == 4 and all("val_acc" in m for m in metrics)
    # every sampled (edge, op) holds exactly the scores of the paths that used it
    pruner = strategy.pruner
    credited: dict = {}
    for h in strategy.history:
        for kind, cell in h["genotype"]["cells"].items():
            assert len(cell["edges"]) == 5  # a single path lists every edge
            for r, (op, _s, _t) in enumerate(cell["edges"]):
                credited.setdefault((kind, r, OPS.index(op)), []).append(h["score"])
    for kind in ("normal", "reduce"):
        for r in range(5):
            for m in range(3):
                assert pruner.rewards[kind][r][m] == credited.get((kind, r, m), [])
    # derive: per edge the best mean op, then the top 2 non-none edges per node by that mean
    genotype = strategy.derive()
    space.validate_genotype(genotype)
    for kind in ("normal", "reduce"):
        best = {}
        for r, edge in enumerate(edge_index(2)):
            means = {m: sum(v) / len(v) for (k, rr, m), v in credited.items()
                     if k == kind and rr == r}
            op = max(means, key=lambda m: (means[m], -m))
            best[edge] = (OPS[op], means[op])
        for edge in genotype.cell(kind).edges:
            assert best[(edge.source, edge.target)][0] == edge.op
        for target in (2, 3):
            live = sorted(((-v[1], e[0]) for e, v in best.items()
                           if e[1] == target and v[0] != "none"))
            kept = sorted(e.source for e in genotype.cell(kind).edges if e.target == target)
            if live:
                assert kept == sorted(s for _, s in live[:2])
    # resume
    other = RandomSearch(cfg)
    other.setup(_env(splits, tmp_path, XnorBinarizer(), space=space, estimator=estimator))
    other.load_state_dict(strategy.state_dict())
    assert other.derive() == genotype
    assert other.op_weights() == strategy.op_weights()


# -- the weight-training budget ----------------------------------------------------------------
def _final_weight_images(strategy, env, epochs: int) -> list[float]:
    metrics = _run(strategy, env, stop=epochs)
    counts = [m["weight_images"] for m in metrics]
    assert strategy.final_metrics()["weight_images"] == counts[-1]
    return counts


@pytest.mark.parametrize("steps", [1, 0])
def test_sampling_strategies_count_weight_images(splits, tmp_path, steps):
    """weight_images = sampled epochs × steps × batch size (16; 48 training images = 3 steps
    when max_steps = 0), cumulative per epoch, and it survives a resume."""
    per_epoch = 16 * (steps or 3)
    space = _space(init_channels=8)
    bnas = BnasStrategy(BnasConfig(trials=1, partial_k=2, max_steps=steps, val_batches=1))
    counts = _final_weight_images(bnas, _env(splits, tmp_path, XnorBinarizer(), space=space), 5)
    assert counts == [per_epoch * (e + 1) for e in range(5)]
    other = BnasStrategy(bnas.config)
    other.setup(_env(splits, tmp_path, XnorBinarizer(), space=space))
    other.load_state_dict(bnas.state_dict())
    assert other.final_metrics()["weight_images"] == 5 * per_epoch
    # CP-NAS counts its Child (the Parent sees the same batches)
    cp = CpNasStrategy(CpNasConfig(trials=1, partial_k=2, max_steps=steps, val_batches=1))
    counts = _final_weight_images(cp, _env(splits, tmp_path, ReconBinarizer(), space=space), 2)
    assert counts == [per_epoch, 2 * per_epoch]


@pytest.mark.parametrize("first", [False, True])
def test_score_before_training_scores_the_shared_weights_as_they_were(splits, tmp_path, first):
    """Alg. 9 trains the path, then scores it; score_before_training scores it first."""
    torch.manual_seed(0)
    cfg = BnasConfig(trials=1, partial_k=2, max_steps=2, val_batches=1,
                     score_before_training=first)
    strategy = BnasStrategy(cfg)
    strategy.setup(_env(splits, tmp_path, XnorBinarizer(), space=_space(init_channels=8)))
    genotype = strategy.pruner.path_genotype(strategy.pruner.next_architecture(strategy.rng))
    before = strategy.score(genotype)["supernet"]["val_acc"]
    reward = strategy.run_epoch(0)["reward"]
    after = strategy.score(genotype)["supernet"]["val_acc"]
    assert before != after  # the two steps moved the path's score
    assert reward == (before if first else after)


def test_warmup_epochs_train_uniform_paths_before_the_first_round(splits, tmp_path):
    """warmup_epochs whole-split epochs come first: fresh paths, nothing credited, counted in
    weight_images; then the schedule of Alg. 9 runs as without them."""
    cfg = CpNasConfig(trials=1, partial_k=2, max_steps=1, val_batches=1, warmup_epochs=2)
    strategy = CpNasStrategy(cfg)
    env = _env(splits, tmp_path, ReconBinarizer(), space=_space(init_channels=8))
    metrics = _run(strategy, env, stop=3)
    assert strategy.num_epochs() == 2 + total_trials(3, 1)
    assert strategy.pruner.records == 1  # only the epoch after the warm-up was credited
    assert [m["weight_images"] for m in metrics] == [48.0, 96.0, 112.0]  # 3 steps, 3, then 1
    assert {"train_loss", "parent_train_loss", "lr"} <= set(metrics[0])
    assert "reward" not in metrics[1] and "reward" in metrics[2]
    assert metrics[0]["lr"] > metrics[1]["lr"]  # one cosine over warm-up and rounds
    for epoch in range(3, strategy.num_epochs()):
        strategy.run_epoch(epoch)
    assert strategy.pruner.finished
    assert strategy.history_document()["warmup_epochs"] == 2


@pytest.mark.parametrize("mode", ["sampling", "sample_and_score"])
def test_random_counts_weight_images(splits, tmp_path, mode):
    estimator = SupernetEstimator(SupernetEstimatorConfig(max_batches=1))
    strategy = RandomSearch(RandomConfig(epochs=3, max_steps=2, mode=mode, samples_per_epoch=1))
    env = _env(splits, tmp_path, XnorBinarizer(), space=_space(style="real"), estimator=estimator)
    assert _final_weight_images(strategy, env, 3) == [32.0, 64.0, 96.0]  # 2 steps × 16 a epoch


def test_random_sampling_mode_needs_the_supernet_estimator():
    with pytest.raises(ValueError, match="estimator = 'supernet'"):
        RandomConfig(estimator="retrain")
    assert RandomConfig(estimator="retrain", mode="sample_and_score").mode == "sample_and_score"


def test_strategy_modules_register_and_stay_torch_free():
    import subprocess
    import sys

    code = ("import sys\n"
            "import automl_bin_plugins.strategies.bnas as b\n"
            "import automl_bin_plugins.strategies.cp_nas as c\n"
            "import automl_bin_plugins.strategies.random_search as r\n"
            "got = {}\n"
            "for m in (b, c, r):\n"
            "    m.register_strategies(lambda name, cls: got.__setitem__(name, cls.__name__))\n"
            "print(sorted(got.items()), 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("[('bnas', 'BnasStrategy'), ('cp_nas', 'CpNasStrategy'), "
                                  "('random', 'RandomSearch')] False")
