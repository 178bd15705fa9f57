"""`SampledPathStrategy`: the template of every search that samples single paths for the pruner.

A sampled-path strategy declares the supernets it trains (`build_trainees`) and how their
scores become one reward (`reward`); the base owns the rest: the warm-up, proposing paths
through `automl_bin.search.pruning.OperationPruner`, training along them (`train_paths`, the
one path-training loop), scoring them, crediting the reward and pruning, the learning-rate
schedule, checkpoint state and the pruning-history artifacts. BNAS/BNAS2 (``bnas``) and CP-NAS
(``cp_nas``) are written on it, and the ``random`` strategy trains its shared supernet with
`train_paths`; see docs/plugins.md, "Writing a sampled-path strategy", and docs/algorithms.md
§BNAS and BNAS2 and §CP-NAS.

After ``warmup_epochs`` epochs of uniform single-path training (a fresh path per batch, nothing
credited: an untrained supernet's rewards are noise), one runner epoch = one sampled single-path
architecture (every edge one op, ``none`` included): the `OperationPruner`
(`automl_bin.search.pruning`) hands out the architectures of the trial schedule; each supernet
of the strategy (BNAS: one binary supernet; CP-NAS: a real Parent and a 1-bit Child) trains its
shared weights along the path for one epoch (at most ``max_steps`` steps), is scored (before
that training with ``score_before_training``) on ``val_batches`` batches of the validation split
by the ``supernet`` estimator (single path, BN batch statistics), and the strategy turns the
scores into one reward that the pruner credits to every sampled (edge, op). After the last trial
of a round the pruner removes one op per edge, ranked by the rewards of that round
(``reward_window = "round"``, Eq. 4.16; ``"all"`` ranks by the whole search). So ``num_epochs =
warmup_epochs + T·Σ_{K=2}^{K0} K``.

`train_paths`, `train_path`, `score_path`, `make_supernet_estimator` and `cell_edges` are also
used by the ``random`` strategy. Torch is imported inside functions only (``automl-bin
check`` validates recipes without it).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from automl_bin.interfaces import Binarizer, Estimator, Genotype, SearchEnv, SearchSpace, Strategy
from automl_bin.interfaces.cell_structure import CELLS
from automl_bin.plots.sampling import plot_remaining_ops
from automl_bin.search.optimizer_keys import WeightSgdKeys
from automl_bin.search.pruning import Architecture, OperationPruner, total_trials

if TYPE_CHECKING:
    import torch

    from automl_bin.interfaces.supernet import Supernet

__all__ = ["SampledPathConfig", "SampledPathStrategy", "PathTrainee", "train_path", "train_paths",
           "score_path", "make_supernet_estimator", "cell_edges", "dag_problem"]

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)


def _check_k0(_inst: Any, _attr: attrs.Attribute, value: int) -> None:
    if value == 1 or value < 0:
        raise ValueError(f"K0 must be 0 (every op of the space) or at least 2, got {value}")


@attrs.frozen(kw_only=True)
class SampledPathConfig(WeightSgdKeys):
    #: candidate ops per edge at the start; 0 = every op of the space (less the excluded ones),
    #: K < that keeps the first K in the space's op order (paper scale: K0 = 8)
    K0: int = attrs.field(default=0, validator=_check_k0)
    #: trials per reduction round: each op of each edge is sampled once per trial (T, [INFER] 3)
    trials: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    #: ops never considered (e.g. ["none"] so that no edge can end as a zero op)
    exclude_ops: list[str] = attrs.field(factory=list)
    #: rewards entering the indicator: "round" (the current round's T trials only: Eq. 4.16's
    #: z̄ = (1/T)·Σ_t, and the UCB's N and n_k count that round; rewards earned while the
    #: supernet was younger do not outvote what it says now) or "all" (the whole search)
    reward_window: Literal["all", "round"] = "round"
    #: epochs of uniform single-path training before the first round (each batch trains a fresh
    #: uniformly drawn path, every edge one op; nothing is credited), as PC-DARTS warms its
    #: weights up before α moves. Rewards of an untrained supernet are mostly noise
    #: (bench/indicator_spread.py); 0 = none, as in Alg. 9
    warmup_epochs: int = attrs.field(default=0, validator=_ge0)
    #: PC-DARTS partial channels: 1/partial_k of the channels go through each edge's op
    partial_k: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: weight SGD (optimizer_keys), cosine-annealed over all sampled epochs; no weight decay on
    #: the latent weights of 1-bit convolutions
    weight_decay: float = attrs.field(default=0.0, validator=_ge0)
    #: stop each sampled epoch after this many steps (0 = the whole training split). Few
    #: steps leave the path's score mostly noise: measure with bench/indicator_spread.py
    max_steps: int = attrs.field(default=0, validator=_ge0)
    #: score each sampled path on at most this many validation batches (0 = all, the same
    #: images for every path, so scores differ by the paths and not by the sample)
    val_batches: int = attrs.field(default=0, validator=_ge0)
    #: score each sampled path with the shared weights as they are, then train it (Alg. 9
    #: trains, then scores: false). A few steps along one path move its score by more than
    #: the paths differ (bench/indicator_spread.py), so short per-path training scores first
    score_before_training: bool = False


@attrs.define(kw_only=True, eq=False)
class PathTrainee:
    """One supernet trained along the sampled paths, with its optimizer and binarizer."""

    name: str
    net: Supernet
    optimizer: torch.optim.Optimizer
    binarizer: Binarizer
    params: list[Any] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if not self.params:
            self.params = self.net.weight_parameters()


# -- helpers (also used by the random strategy) ------------------------------------------------
def cell_edges(space: SearchSpace, supernet: Supernet) -> dict[str, list[tuple[int, int]]]:
    """Per cell type, ``(source, target)`` of every supernet edge (docs/algorithms.md §Cell
    DAG)."""
    problem = dag_problem(space)
    if problem:
        raise ValueError(problem)
    return supernet.cell_structure().edges()


def dag_problem(space: SearchSpace) -> str | None:
    """Why ``space`` cannot be sampled edge by edge, or None."""
    if CELLS not in space.capabilities:
        return (f"the search space does not declare the {CELLS!r} capability (it exposes no "
                "cell structure)")
    return None


def make_supernet_estimator(env: SearchEnv, max_batches: int = 0) -> Estimator:
    """The registered ``supernet`` estimator (BN batch statistics) scoring ``max_batches``."""
    if env.create is None:
        raise ValueError("this strategy builds the 'supernet' estimator through env.create, "
                         "which is not set")
    default = env.create("estimator", "supernet")
    config = attrs.evolve(default.config, max_batches=max_batches, bn_stats="batch")
    return env.create("estimator", "supernet", config)


def score_path(env: SearchEnv, estimator: Estimator, net: Supernet,
               genotype: Genotype) -> dict[str, float]:
    """``val_loss`` and ``val_acc`` of the single path ``genotype`` through ``net``."""
    from automl_bin.interfaces import EstimationEnv

    est_env = EstimationEnv(space=env.space, binarizer=env.binarizer, input_shape=env.input_shape,
                            num_classes=env.num_classes, device=env.device, seed=env.seed,
                            splits=env.splits, fit="train", score="val", reporter=env.reporter,
                            supernet=net, network=env.network, create=env.create)
    return dict(estimator.estimate(genotype, est_env).metrics)


def train_path(env: SearchEnv, trainees: Sequence[PathTrainee], genotype: Genotype, epoch: int,
               *, steps: int, lr: float, grad_clip: float) -> dict[str, dict[str, float]]:
    """Train every trainee along the single path ``genotype`` for one epoch on the same batches.

    Loss: CE + the binarizer's auxiliary terms (`Binarizer.aux_losses`, with the pooled
    features of `capture_features` for feature terms such as the CP-NAS compactness loss).
    Returns per trainee ``train_loss`` (CE), ``train_acc``, the mean of every aux term and
    ``train_images`` (the images its weight steps saw, for the ``weight_images`` budget).
    """
    return train_paths(env, trainees, lambda: genotype, epoch, steps=steps, lr=lr,
                       grad_clip=grad_clip, label=f"sampled path {epoch + 1}")


def train_paths(env: SearchEnv, trainees: Sequence[PathTrainee], path: Callable[[], Genotype],
                epoch: int, *, steps: int, lr: float, grad_clip: float,
                label: str, aux_losses: bool = True) -> dict[str, dict[str, float]]:
    """`train_path` with the single path ``path()`` of every batch (the same for all trainees):
    a constant for one sampled path, a fresh uniform draw per batch for the warm-up and for
    random search with weight sharing. ``aux_losses=False`` trains on CE alone."""
    import torch.nn.functional as F

    from automl_bin.nn.features import capture_features
    from automl_bin.training import RunningMeter, clip_and_step, set_lr

    train = env.splits["train"]
    steps = len(train) if not steps else min(len(train), steps)
    meters = {t.name: RunningMeter() for t in trainees}
    aux_sums: dict[str, dict[str, float]] = {t.name: {} for t in trainees}
    for t in trainees:
        set_lr(t.optimizer, lr)
        t.net.train()
    n = images = 0
    current: Genotype | None = None
    try:
        for x, y in env.reporter.track(itertools.islice(train.batches(epoch), steps), steps,
                                       label):
            genotype = path()
            if genotype is not current:  # building the fixed path is skipped when unchanged
                for t in trainees:
                    t.net.set_fixed_architecture(genotype)
                current = genotype
            for t in trainees:
                with capture_features(t.net) as features:
                    logits = t.net(x)
                loss = F.cross_entropy(logits, y)
                aux = t.binarizer.aux_losses(t.net, features.value, y) if aux_losses else {}
                total = loss + sum(aux.values()) if aux else loss
                t.optimizer.zero_grad(set_to_none=True)
                total.backward()
                clip_and_step(t.params, t.optimizer, grad_clip)
                meters[t.name].update(loss.detach(), logits.detach(), y)
                for key, value in aux.items():
                    aux_sums[t.name][key] = aux_sums[t.name].get(key, 0.0) + float(value.detach())
            n += 1
            images += int(y.shape[0])
    finally:
        for t in trainees:
            t.net.set_fixed_architecture(None)
    out = {}
    for t in trainees:
        metrics = meters[t.name].result("train")
        metrics.update({k: v / max(n, 1) for k, v in aux_sums[t.name].items()})
        metrics["train_images"] = float(images)
        out[t.name] = metrics
    return out


# -- the base strategy --------------------------------------------------------------------------
class SampledPathStrategy(Strategy):
    """Sample single paths by the pruner's schedule, train, score, credit, prune (Alg. 9).

    Subclasses implement `build_trainees` (the supernets) and `reward` (the scores → one reward
    and the epoch's metrics), and may override `indicator_name`/`sampling_name`. Every epoch
    logs ``weight_images``: the images the first trainee's weight steps have seen so far (the
    searched network: BNAS's supernet, CP-NAS's Child), the search's weight-training budget.
    """

    Config = SampledPathConfig
    #: name of the strategy in artifacts
    label: str = "sampled_path"

    # -- hooks ----------------------------------------------------------------------------------
    def indicator_name(self) -> Literal["mean", "ucb"]:
        return "mean"

    def sampling_name(self) -> Literal["permutation", "lcb_softmax"]:
        return "permutation"

    def build_trainees(self, env: SearchEnv) -> list[PathTrainee]:
        """The supernets trained along every sampled path; the first is the searched network
        (it gives the edges, and its images are ``weight_images``)."""
        raise NotImplementedError

    def reward(self, train: Mapping[str, Mapping[str, float]],
               scores: Mapping[str, Mapping[str, float]]) -> tuple[float, dict[str, float]]:
        """``(reward credited to the sampled ops, metrics of the epoch)``."""
        raise NotImplementedError

    # -- checks ---------------------------------------------------------------------------------
    def supernet_options(self) -> dict[str, Any]:
        """Partial channels (PC-DARTS, no edge normalisation); k = 1 asks for nothing."""
        k = self.config.partial_k
        return {"partial_k": k} if k != 1 else {}

    def check_compatible(self, space: SearchSpace, binarizer: Binarizer) -> str | None:
        cfg = self.config
        problem = dag_problem(space)
        if problem:
            return f"it samples one op on every edge of a DARTS cell DAG, and {problem}"
        if cfg.partial_k != 1 and "partial_k" not in space.supernet_options:
            return (f"partial_k = {cfg.partial_k} needs a search space with the 'partial_k' "
                    "supernet option; set partial_k = 1")
        ops = list(space.op_names)
        unknown = [o for o in cfg.exclude_ops if o not in ops]
        if unknown:
            return f"exclude_ops names unknown op(s) {unknown}; the space's ops are {ops}"
        available = len([o for o in ops if o not in cfg.exclude_ops])
        if cfg.K0 > available:
            return (f"K0 = {cfg.K0} exceeds the {available} candidate ops of the search space "
                    f"({ops}, less exclude_ops)")
        if (cfg.K0 or available) < 2:
            return "there must be at least 2 candidate ops per edge to prune"
        return None

    # -- lifecycle ------------------------------------------------------------------------------
    def setup(self, env: SearchEnv) -> None:
        super().setup(env)
        cfg = self.config
        problem = self.check_compatible(env.space, env.binarizer)
        if problem:
            raise ValueError(f"{self.label} cannot run: {problem}")
        self.sgd = cfg.sgd_config()
        self.trainees = self.build_trainees(env)
        self.pruner = OperationPruner(
            op_names=env.space.op_names, edges=cell_edges(env.space, self.trainees[0].net),
            space=env.space.genotype_space, trials=cfg.trials, indicator=self.indicator_name(),
            sampling=self.sampling_name(), window=cfg.reward_window, exclude=cfg.exclude_ops,
            k0=cfg.K0 or None)
        self.rng = random.Random(env.seed)
        self.estimator = make_supernet_estimator(env, cfg.val_batches)
        self._artifacts_logged = False
        #: images seen by the searched network's weight steps so far
        self.weight_images = 0

    def make_trainee(self, env: SearchEnv, name: str, binarizer: Binarizer,
                     weight_decay: float) -> PathTrainee:
        """A supernet of ``env.space`` with ``binarizer`` and its SGD optimizer."""
        from automl_bin.training import make_sgd

        net = env.space.build_supernet(env.input_shape, env.num_classes, binarizer,
                                       self.supernet_options()).to(env.device)
        opt = make_sgd(net.weight_parameters(), attrs.evolve(self.sgd, weight_decay=weight_decay))
        return PathTrainee(name=name, net=net, optimizer=opt, binarizer=binarizer)

    def num_epochs(self) -> int:
        return self.config.warmup_epochs + total_trials(self.pruner.initial_k, self.config.trials)

    def run_epoch(self, epoch: int) -> Mapping[str, float]:
        from automl_bin.training import cosine_lr

        env = self.env
        assert env is not None, "setup() must run first"
        if epoch < self.config.warmup_epochs:
            return self.warm_up(epoch)
        arch = self.pruner.next_architecture(self.rng)
        genotype = self.pruner.path_genotype(arch)
        lr = cosine_lr(self.sgd, epoch, self.num_epochs())
        first = self.config.score_before_training
        scores = self.score(genotype) if first else {}
        train = train_path(env, self.trainees, genotype, epoch, steps=self.config.max_steps,
                           lr=lr, grad_clip=self.config.grad_clip)
        reward, metrics = self.reward(train, scores if first else self.score(genotype))
        trial, position = self.pruner.trials_done, self.pruner.position
        self.credit(arch, reward)
        self.weight_images += int(train[self.trainees[0].name]["train_images"])
        metrics.update({"reward": reward, "remaining_ops": self.pruner.mean_remaining(),
                        "round": float(self.pruner.round), "trial": float(trial),
                        "sample": float(position), "lr": lr,
                        "weight_images": float(self.weight_images)})
        return metrics

    def score(self, genotype: Genotype) -> dict[str, dict[str, float]]:
        """Every trainee's ``val_loss``/``val_acc`` along the single path ``genotype``."""
        env = self.env
        assert env is not None, "setup() must run first"
        return {t.name: score_path(env, self.estimator, t.net, genotype) for t in self.trainees}

    def warm_up(self, epoch: int) -> dict[str, float]:
        """One warm-up epoch over the whole training split, a uniformly drawn single path per
        batch for every trainee (the same path), nothing credited."""
        from automl_bin.training import cosine_lr

        env = self.env
        assert env is not None, "setup() must run first"
        pruner, rng = self.pruner, self.rng
        lr = cosine_lr(self.sgd, epoch, self.num_epochs())
        train = train_paths(env, self.trainees,
                            lambda: pruner.path_genotype(pruner.sample_architecture(rng)),
                            epoch, steps=0, lr=lr, grad_clip=self.config.grad_clip,
                            label=f"warm-up epoch {epoch + 1}")
        first = self.trainees[0].name
        self.weight_images += int(train[first]["train_images"])
        metrics = {k: v for k, v in train[first].items() if k != "train_images"}
        for t in self.trainees[1:]:  # e.g. CP-NAS's Parent
            metrics.update({f"{t.name}_{k}": v for k, v in train[t.name].items()
                            if k != "train_images"})
        metrics.update({"remaining_ops": pruner.mean_remaining(), "round": 0.0, "lr": lr,
                        "weight_images": float(self.weight_images)})
        return metrics

    def credit(self, arch: Architecture, reward: float) -> dict[str, Any] | None:
        """Credit ``reward`` to ``arch``'s ops and advance the schedule; after a prune, log the
        round's metrics at step = round and return the pruner's history entry."""
        entry = self.pruner.complete(arch, reward)
        if entry is not None and self.env is not None:
            self.env.reporter.log_metrics(self.round_metrics(entry), step=entry["round"])
        return entry

    def round_metrics(self, entry: Mapping[str, Any]) -> dict[str, float]:
        """Logged at step = round after each prune."""
        best = [max(e.values()) for rows in entry["indicators"].values() for e in rows]
        worst = [min(e.values()) for rows in entry["indicators"].values() for e in rows]
        return {"remaining_ops": self.pruner.mean_remaining(), "pruned_round": entry["round"],
                "ops_before": entry["K"], "mean_max_indicator": sum(best) / len(best),
                "mean_removed_indicator": sum(worst) / len(worst)}

    def derive(self) -> Genotype:
        return self.pruner.genotype(meta={"rounds": self.pruner.round})

    def op_weights(self) -> Mapping[str, Any] | None:
        return self.pruner.indicator_matrix()

    def final_metrics(self) -> Mapping[str, float]:
        self.log_artifacts()
        return {"prune_rounds": float(self.pruner.round),
                "final_remaining_ops": self.pruner.mean_remaining(),
                "weight_images": float(self.weight_images)}

    def history_document(self) -> dict[str, Any]:
        p = self.pruner
        return {"strategy": self.label, "indicator": p.indicator, "sampling": p.sampling,
                "window": p.window, "trials": p.trials, "K0": p.initial_k,
                "warmup_epochs": self.config.warmup_epochs,
                "op_names": list(p.op_names), "excluded": list(p.exclude),
                "sampled": p.records, "rounds": p.history, "remaining": p.remaining()}

    def log_artifacts(self) -> None:
        """``pruning_history.json`` and ``remaining_ops.png`` on the search run (once)."""
        env = self.env
        if env is None or self._artifacts_logged:
            return
        self._artifacts_logged = True
        env.reporter.log_json("pruning_history.json", self.history_document())
        png = plot_remaining_ops(self.pruner, Path(env.reporter.work_dir) / "remaining_ops.png",
                                 title=f"{self.label}: operation-space reduction")
        env.reporter.log_artifact(png)

    def teardown(self) -> None:
        # an interrupted or failed search still leaves its history (final_metrics did not run)
        if self.env is not None and getattr(self, "pruner", None) is not None \
                and self.pruner.history and not self._artifacts_logged:
            try:
                self.log_artifacts()
            except Exception as exc:  # never mask the error that ended the search
                self.env.reporter.info(f"could not log the pruning history: {exc}")

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "pruner": self.pruner.state_dict(),
            "rng": [version, list(internal), gauss],
            "nets": {t.name: t.net.state_dict() for t in self.trainees},
            "optimizers": {t.name: t.optimizer.state_dict() for t in self.trainees},
            "weight_images": self.weight_images,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pruner.load_state_dict(state["pruner"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        for t in self.trainees:
            t.net.load_state_dict(state["nets"][t.name])
            t.optimizer.load_state_dict(state["optimizers"][t.name])
        # checkpoints written before the count existed resume from 0
        self.weight_images = int(state.get("weight_images", 0))
