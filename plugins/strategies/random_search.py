"""The ``random`` baseline, in two modes.

``mode = "sampling"`` (default): random search for binary NAS as the book describes it: "the
1-bit supernet randomly samples and trains an architecture in each epoch, then assigns the
expectation of all performance to each corresponding edge and operations, and returns the
architecture with the highest score". Each epoch draws ONE single-path architecture uniformly
(every edge one op of the space, ``none`` included), trains the supernet (1-bit when the recipe's
binarizer is) along it for the epoch, scores it on the validation split with the ``supernet``
estimator, and credits that accuracy to every sampled (edge, op). The derived genotype takes on
every edge the op with the highest mean credited score, then the top-2 edges of each node by that
score, skipping ``none`` (the pruning strategies' rule; the bookkeeping is
`automl_bin.search.pruning.OperationPruner`, without pruning).

``mode = "sample_and_score"``: with the ``supernet`` estimator it is random search with weight
sharing (Li & Talwalkar 2019): each epoch trains the supernet along a uniformly sampled
genotype per batch, then scores ``samples_per_epoch`` fresh random genotypes on the validation
split with the shared weights. With ``retrain`` every sample is trained from scratch (costly,
honest). The best genotype by validation score over the whole search is returned.

With the ``supernet`` estimator (both modes) every epoch logs ``weight_images``: the images the
supernet's weight steps have seen so far, the search's weight-training budget. With ``retrain``
there is no searched network to count (each sample trains its own), so it is not logged.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin.interfaces import Binarizer, Genotype, SearchEnv, SearchSpace, Strategy
from automl_bin.search.optimizer_keys import WeightSgdKeys

__all__ = ["RandomSearch"]

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)

MODES = ("sampling", "sample_and_score")


def _check_mode(inst: Any, _attr: attrs.Attribute, value: str) -> None:
    if value not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {value!r}")
    if value == "sampling" and inst.estimator != "supernet":
        raise ValueError("mode 'sampling' scores each sampled path with the shared weights; it "
                         "needs estimator = 'supernet' (or use mode = 'sample_and_score')")


@attrs.frozen(kw_only=True)
class RandomConfig(WeightSgdKeys):
    # lr, lr_min, momentum, weight_decay, grad_clip: the shared supernet's SGD (optimizer_keys)
    #: epochs; in "sampling" mode one sampled single-path architecture per epoch
    epochs: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    #: "sampling": one path per epoch, trained, scored and credited to its ops, derive by the
    #: best mean op per edge (the book's binary random search); "sample_and_score": score
    #: samples_per_epoch random genotypes per epoch and keep the best
    mode: Literal["sampling", "sample_and_score"] = attrs.field(default="sampling",
                                                                validator=_check_mode)
    #: random genotypes scored at the end of each epoch ("sample_and_score" only)
    samples_per_epoch: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: the estimator scoring samples: "supernet" (weight sharing) or "retrain"
    estimator: str = "supernet"
    #: that estimator's own keys
    estimator_params: dict[str, Any] = attrs.field(factory=dict)
    #: stop each supernet epoch after this many steps (0 = whole training split)
    max_steps: int = attrs.field(default=0, validator=_ge0)


class RandomSearch(Strategy):
    """Uniform random sampling of single paths ("sampling") or genotypes ("sample_and_score"),
    scored by the configured estimator."""

    Config = RandomConfig
    requires_estimator = True

    def check_compatible(self, space: SearchSpace, binarizer: Binarizer) -> str | None:
        if self.config.mode == "sampling":
            from automl_bin.search.sampled_path import dag_problem

            problem = dag_problem(space)
            if problem:
                return (f"mode 'sampling' samples one op on every edge of a DARTS cell DAG, and "
                        f"{problem} (use mode = 'sample_and_score')")
        return None

    def setup(self, env: SearchEnv) -> None:
        super().setup(env)
        if env.estimator is None:
            raise ValueError("the random strategy needs an estimator ([strategy] estimator)")
        self.rng = random.Random(env.seed)
        self.best: tuple[float, Genotype] | None = None
        self.history: list[dict[str, Any]] = []
        self.weight_sharing = self.config.estimator == "supernet"
        self.supernet = None
        #: images seen by the supernet's weight steps so far (weight sharing only)
        self.weight_images = 0
        if self.weight_sharing:
            from automl_bin.training import make_sgd

            cfg = self.config
            self.supernet = env.space.build_supernet(env.input_shape, env.num_classes,
                                                     env.binarizer).to(env.device)
            self.sgd = cfg.sgd_config()
            self.w_opt = make_sgd(self.supernet.weight_parameters(), self.sgd)
        self.pruner = None
        if self.config.mode == "sampling":
            from automl_bin.search.pruning import OperationPruner
            from automl_bin.search.sampled_path import cell_edges

            problem = self.check_compatible(env.space, env.binarizer)
            if problem:
                raise ValueError(f"the random strategy cannot run: {problem}")
            assert self.supernet is not None
            # the bookkeeping of the pruning strategies, never pruned: uniform draws per edge,
            # every score of the search in each op's expectation ("all")
            self.pruner = OperationPruner(op_names=env.space.op_names,
                                          edges=cell_edges(env.space, self.supernet),
                                          space=env.space.genotype_space, trials=1, window="all")

    def num_epochs(self) -> int:
        return self.config.epochs

    def _train_supernet(self, epoch: int) -> dict[str, float]:
        """Weight sharing: the supernet trained along a fresh uniform genotype per batch, on
        CE alone (Li & Talwalkar), by the sampled-path trainer of the sampling strategies."""
        from automl_bin.training import cosine_lr
        from automl_bin.search.sampled_path import PathTrainee, train_paths

        env, net = self.env, self.supernet
        assert env is not None and net is not None
        trainee = PathTrainee(name="supernet", net=net, optimizer=self.w_opt,
                              binarizer=env.binarizer)
        space, rng = env.space, self.rng
        metrics = train_paths(env, [trainee], lambda: space.sample_genotype(rng), epoch,
                              steps=self.config.max_steps,
                              lr=cosine_lr(self.sgd, epoch, self.config.epochs),
                              grad_clip=self.config.grad_clip, label=f"search epoch {epoch + 1}",
                              aux_losses=False)["supernet"]
        self.weight_images += int(metrics.pop("train_images"))
        return metrics

    def _estimation_env(self, epoch: int) -> Any:
        from automl_bin.interfaces import EstimationEnv

        env = self.env
        assert env is not None
        return EstimationEnv(space=env.space, binarizer=env.binarizer,
                             input_shape=env.input_shape, num_classes=env.num_classes,
                             device=env.device, seed=env.seed + epoch, splits=env.splits,
                             fit="train", score="val", reporter=env.reporter,
                             supernet=self.supernet, network=env.network)

    def _sampling_epoch(self, epoch: int) -> dict[str, float]:
        """One uniformly sampled single path: train along it, score it, credit its ops."""
        from automl_bin.training import cosine_lr
        from automl_bin.search.sampled_path import PathTrainee, train_path

        env, pruner = self.env, self.pruner
        assert env is not None and env.estimator is not None and pruner is not None
        arch = pruner.sample_architecture(self.rng)
        genotype = pruner.path_genotype(arch)
        lr = cosine_lr(self.sgd, epoch, self.config.epochs)
        trainee = PathTrainee(name="supernet", net=self.supernet, optimizer=self.w_opt,
                              binarizer=env.binarizer)
        metrics = train_path(env, [trainee], genotype, epoch, steps=self.config.max_steps,
                             lr=lr, grad_clip=self.config.grad_clip)["supernet"]
        self.weight_images += int(metrics["train_images"])
        estimate = env.estimator.estimate(genotype, self._estimation_env(epoch))
        pruner.record(arch, estimate.score)
        self.history.append({"epoch": epoch, "score": estimate.score,
                             "genotype": genotype.to_dict()})
        if self.best is None or estimate.score > self.best[0]:
            self.best = (estimate.score, genotype)
        metrics.update({"val_acc": estimate.score, "best_val_acc": self.best[0], "lr": lr,
                        "weight_images": float(self.weight_images)})
        return metrics

    def run_epoch(self, epoch: int) -> Mapping[str, float]:
        env = self.env
        assert env is not None and env.estimator is not None
        if self.pruner is not None:
            return self._sampling_epoch(epoch)
        metrics: dict[str, float] = {}
        if self.weight_sharing:
            metrics.update(self._train_supernet(epoch))
            metrics["weight_images"] = float(self.weight_images)
        est_env = self._estimation_env(epoch)
        scores = []
        for _ in range(self.config.samples_per_epoch):
            genotype = env.space.sample_genotype(self.rng)
            estimate = env.estimator.estimate(genotype, est_env)
            scores.append(estimate.score)
            self.history.append({"epoch": epoch, "score": estimate.score,
                                 "genotype": genotype.to_dict()})
            if self.best is None or estimate.score > self.best[0]:
                self.best = (estimate.score, genotype)
        assert self.best is not None
        metrics.update({"val_acc": max(scores), "mean_sample_val_acc": sum(scores) / len(scores),
                        "best_val_acc": self.best[0]})
        return metrics

    def derive(self) -> Genotype:
        if self.best is None:
            raise RuntimeError("random search derived before any epoch ran")
        if self.pruner is not None:  # best mean op per edge, top-2 edges per node
            return self.pruner.genotype(rank="mean")
        return self.best[1]

    def op_weights(self) -> Mapping[str, Any] | None:
        """In mode "sampling", per cell type the ``edges × ops`` mean credited scores (0 where
        never sampled); None otherwise."""
        return self.pruner.mean_matrix() if self.pruner is not None else None

    def final_metrics(self) -> Mapping[str, float]:
        out = {"best_val_acc": self.best[0]} if self.best else {}
        if self.weight_sharing:
            out["weight_images"] = float(self.weight_images)
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "rng": self.rng.getstate(),
            "best": None if self.best is None else (self.best[0], self.best[1].to_json()),
            "history": self.history,
        }
        if self.supernet is not None:
            state["supernet"] = self.supernet.state_dict()
            state["w_opt"] = self.w_opt.state_dict()
            state["weight_images"] = self.weight_images
        if self.pruner is not None:
            state["pruner"] = self.pruner.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        best = state["best"]
        self.best = None if best is None else (best[0], Genotype.from_json(best[1]))
        self.history = list(state["history"])
        if self.supernet is not None:
            self.supernet.load_state_dict(state["supernet"])
            self.w_opt.load_state_dict(state["w_opt"])
            # checkpoints written before the count existed resume from 0
            self.weight_images = int(state.get("weight_images", 0))
        if self.pruner is not None:
            self.pruner.load_state_dict(state["pruner"])


@hookimpl
def register_strategies(register: Register) -> None:
    register("random", RandomSearch)
