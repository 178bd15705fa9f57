"""Seed-to-seed spread of the BNAS/CP-NAS path indicator vs the gaps it ranks.

Not a test. A sampling strategy (``bnas``, ``cp_nas``) credits every sampled path's reward to
each of its ops, and one permutation trial at ``K`` ops puts every op of every edge in exactly
one of its ``K`` paths; so on every edge the ops' scores of a round (T = 1) are the ``K`` path
rewards, and the round removes the op of the lowest one. The reward is only worth ranking when
its noise is below those gaps. This script measures both, for a fixed supernet state:

1. build the recipe's strategy on its data (``--set`` overrides; default
   ``recipes/bnas_fmnist.toml`` on 1,280 images with ``warmup_epochs = 15``: the recipe's 150
   warm-up steps), run its own ``warmup_epochs``, then train it along
   ``--warmup-paths`` uniformly sampled paths of ``--warmup-steps`` steps each (a search some
   rounds in; default none), and freeze that state (``warmup_images``: the images its searched
   network has trained on by then);
2. draw one trial schedule at K0 (``K`` paths); for every setting ``MAXxVAL`` of
   ``--settings`` (``max_steps`` × ``val_batches``, 0 = the whole split) and every seed, restore
   the frozen state and give each path what the strategy gives it: ``max_steps`` training steps
   (`train_path`, batches of their own, as each sampled epoch has) and a score on
   ``val_batches`` validation batches (`score_path`; before the training steps with
   ``--set strategy.score_before_training=true``), turned into the reward by the strategy's
   own `reward` (BNAS: the accuracy; CP-NAS: z of Eq. 4.15). A seed changes the training
   batches and the validation images: each seed scores all paths on the same images (as one
   search does), drawn from the training images outside the search subset (as another split
   seed would give);
3. per setting: ``path_noise_std`` (std of one path's reward over seeds, pooled over paths),
   ``op_gap_std`` (std over paths of the seed-mean reward: the spread of mean scores between
   the ops of an edge), ``signal_std`` (that spread less the noise of a mean over seeds),
   ``pair_gap`` / ``pair_noise`` (mean |gap| between two paths over seeds, and the pooled std
   of that gap from seed to seed: the same images score both paths, so their errors partly
   cancel), ``worst_agreement`` (share of seeds whose lowest path is the lowest seed-mean path:
   which op the round would remove), ``rank_corr`` (mean Spearman correlation of the paths'
   rewards between two seeds) and ``cpu_s_per_path``.

Prints ONE JSON line. The recipe's settings at the state of their first round, against one
validation batch (BNAS about 3 CPU-minutes with 6 seeds on one thread, CP-NAS 6), and the old
setting (lr 0.05, no warm-up, train then score on one batch) 16 steps into a search:

    .venv/bin/python bench/indicator_spread.py --seeds 6
    .venv/bin/python bench/indicator_spread.py --seeds 6 --recipe recipes/cp_nas_fmnist.toml
    .venv/bin/python bench/indicator_spread.py --seeds 6 --settings 2x1 --warmup-paths 8 \
        --warmup-steps 2 --set data.subset=1280 --set strategy.warmup_epochs=0 \
        --set strategy.lr=0.05 --set strategy.score_before_training=false

table43_fmnist's data and space (2,560 images, 2 nodes), no warm-up, 16 steps in:

    .venv/bin/python bench/indicator_spread.py --seeds 6 --settings 2x0,2x4 --warmup-paths 8 \
        --warmup-steps 2 --set data.subset=2560 --set search_space.nodes=2 \
        --set strategy.warmup_epochs=0
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from automl_bin.data import TensorBatches, make_splits
from automl_bin.interfaces import SearchEnv
from automl_bin.plugins import load_plugins
from automl_bin.recipe import load_recipe, resolve
from automl_bin.search.sampled_path import (
    SampledPathStrategy,
    make_supernet_estimator,
    score_path,
    train_path,
)
from automl_bin.testing.fixtures import RecordingReporter
from automl_bin.training import cosine_lr

ROOT = Path(__file__).resolve().parent.parent
#: 1,280 images and the warm-up that makes 150 steps of them, on top of the BNAS/CP-NAS fmnist
#: recipes (whose 1,920 images warm up in 10 epochs)
DEFAULT_SETS = ("data.subset=1280", "strategy.warmup_epochs=15")
#: images drawn per seed come from this many training images outside the search subset
POOL = 8192


def parse_settings(text: str) -> list[tuple[int, int]]:
    """``"2x1,5x0"`` → ``[(2, 1), (5, 0)]`` (max_steps × val_batches)."""
    out = []
    for item in text.split(","):
        steps, batches = item.lower().split("x")
        out.append((int(steps), int(batches)))
    return out


def build(recipe_path: str, overrides: Sequence[str]) -> tuple[SampledPathStrategy, SearchEnv, Any]:
    """The recipe's (unstarted) strategy, its search env and the loaded data set."""
    recipe = load_recipe(recipe_path, overrides)
    plugins = load_plugins()
    resolved = resolve(recipe, plugins.registry)
    if not isinstance(resolved.strategy, SampledPathStrategy):
        raise SystemExit(f"{recipe.strategy.name!r} is not a sampling strategy (bnas, cp_nas)")
    data = resolved.dataset.load()
    d = recipe.data
    splits = make_splits(data, batch_size=d.batch_size, eval_batch_size=d.eval_batch_size,
                         train_portion=d.train_portion, subset=d.subset,
                         seed=recipe.experiment.seed, device=torch.device("cpu"))
    env = SearchEnv(space=resolved.search_space, binarizer=resolved.binarizer,
                    input_shape=data.input_shape, num_classes=data.num_classes,
                    device=torch.device("cpu"), seed=recipe.experiment.seed, splits=splits,
                    reporter=RecordingReporter(),
                    create=lambda kind, name, config=None: plugins.registry.create(
                        kind, name, config))
    return resolved.strategy, env, (data, recipe)


def held_out_pool(data: Any, recipe: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images outside the search subset (the order of `make_splits`)."""
    n = int(data.train_labels.shape[0])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(recipe.experiment.seed))
    rest = order[recipe.data.subset or n:][:POOL]
    return data.train_images[rest], data.train_labels[rest]


def val_sample(pool: tuple[torch.Tensor, torch.Tensor], like: TensorBatches, images: int,
               seed: int) -> TensorBatches:
    """``images`` pool images drawn by ``seed``, batched like the search's val split."""
    pick = torch.randperm(len(pool[1]), generator=torch.Generator().manual_seed(seed))[:images]
    return TensorBatches(pool[0][pick], pool[1][pick], batch_size=like.batch_size,
                         mean=like._stats[0], std=like._stats[1], device=like.device,
                         seed=seed, salt=2)


def warm_up(strategy: SampledPathStrategy, env: SearchEnv, paths: int, steps: int) -> int:
    """The strategy's own warm-up epochs, then ``paths`` uniformly sampled paths of ``steps``
    steps (the search's lr); returns the epochs done."""
    rng = random.Random(env.seed)
    first = strategy.config.warmup_epochs
    for epoch in range(first):
        strategy.run_epoch(epoch)
    for epoch in range(first, first + paths):
        genotype = strategy.pruner.path_genotype(strategy.pruner.sample_architecture(rng))
        lr = cosine_lr(strategy.sgd, epoch, strategy.num_epochs())
        train = train_path(env, strategy.trainees, genotype, epoch, steps=steps, lr=lr,
                           grad_clip=strategy.config.grad_clip)
        strategy.weight_images += int(train[strategy.trainees[0].name]["train_images"])
    return first + paths


def snapshot(strategy: SampledPathStrategy) -> list[tuple[dict, dict]]:
    return [(copy.deepcopy(t.net.state_dict()), copy.deepcopy(t.optimizer.state_dict()))
            for t in strategy.trainees]


def restore(strategy: SampledPathStrategy, state: list[tuple[dict, dict]]) -> None:
    for t, (net, opt) in zip(strategy.trainees, state):
        t.net.load_state_dict(net)
        t.optimizer.load_state_dict(opt)


def path_reward(strategy: SampledPathStrategy, env: SearchEnv, genotype: Any, epoch: int,
                steps: int, lr: float) -> float:
    """What one sampled epoch credits: train ``steps`` on batches of ``epoch`` and score (or
    score, then train: ``score_before_training``), turned into the reward."""
    def score() -> dict[str, dict[str, float]]:
        return {t.name: score_path(env, strategy.estimator, t.net, genotype)
                for t in strategy.trainees}

    first = strategy.config.score_before_training
    scores = score() if first else {}
    train = train_path(env, strategy.trainees, genotype, epoch, steps=steps, lr=lr,
                       grad_clip=strategy.config.grad_clip)
    return strategy.reward(train, scores if first else score())[0]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = [0.0] * len(v)
        i = 0
        while i < len(order):  # ties share their mean rank
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    if len(set(ra)) < 2 or len(set(rb)) < 2:
        return 0.0  # a constant ranking carries no order
    return statistics.correlation(ra, rb)


def summarise(rewards: list[list[float]]) -> dict[str, float]:
    """``rewards[path][seed]`` → the spread numbers of the module docstring."""
    paths, seeds = len(rewards), len(rewards[0])
    means = [statistics.fmean(r) for r in rewards]
    noise_var = statistics.fmean(statistics.variance(r) for r in rewards)
    gap_var = statistics.variance(means)
    pairs = list(itertools.combinations(range(paths), 2))
    diffs = [[rewards[p][s] - rewards[q][s] for s in range(seeds)] for p, q in pairs]
    worst = min(range(paths), key=lambda p: means[p])
    by_seed = [[rewards[p][s] for p in range(paths)] for s in range(seeds)]
    agree = sum(min(range(paths), key=lambda p: col[p]) == worst for col in by_seed)
    corr = [spearman(by_seed[a], by_seed[b]) for a, b in itertools.combinations(range(seeds), 2)]
    signal = math.sqrt(max(0.0, gap_var - noise_var / seeds))
    return {
        "mean_reward": statistics.fmean(means),
        "path_noise_std": math.sqrt(noise_var),
        "op_gap_std": math.sqrt(gap_var),
        "signal_std": signal,
        "noise_over_signal": math.sqrt(noise_var) / signal if signal else math.inf,
        "pair_gap": statistics.fmean(abs(statistics.fmean(d)) for d in diffs),
        "pair_noise": math.sqrt(statistics.fmean(statistics.variance(d) for d in diffs)),
        "worst_agreement": agree / seeds,
        "rank_corr": statistics.fmean(corr),
    }


def measure(strategy: SampledPathStrategy, env: SearchEnv, frozen: list[tuple[dict, dict]],
            schedule: list[Any], pool: tuple[torch.Tensor, torch.Tensor],
            setting: tuple[int, int], seeds: int, lr: float) -> dict[str, Any]:
    """Every path's reward under every seed for one ``(max_steps, val_batches)``."""
    steps, batches = setting
    val = env.splits["val"]
    images = (batches or len(val)) * val.batch_size
    strategy.estimator = make_supernet_estimator(env, 0)  # the drawn sample is the whole set
    rewards = [[0.0] * seeds for _ in schedule]
    t0 = time.process_time()
    for s in range(seeds):
        seed_env = attrs.evolve(env, splits={**env.splits,
                                             "val": val_sample(pool, val, images, 1000 + s)})
        for p, arch in enumerate(schedule):
            restore(strategy, frozen)
            # batches of their own for every (seed, path), as every sampled epoch has
            epoch = 10_000 + s * len(schedule) + p
            rewards[p][s] = path_reward(strategy, seed_env, strategy.pruner.path_genotype(arch),
                                        epoch, steps, lr)
    cpu = time.process_time() - t0
    out: dict[str, Any] = {"max_steps": steps, "val_batches": batches,
                           "train_images": steps * env.splits["train"].batch_size
                           if steps else env.splits["train"].num_samples,
                           "val_images": images}
    out.update(summarise(rewards))
    out["cpu_s_per_path"] = cpu / (seeds * len(schedule))
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "bnas_fmnist.toml"))
    ap.add_argument("--set", dest="sets", action="append", default=None,
                    help="recipe override SECTION.KEY=VALUE (default: "
                         f"{' '.join(DEFAULT_SETS)})")
    ap.add_argument("--settings", default="2x1,2x0",
                    help="comma-separated MAX_STEPSxVAL_BATCHES (0 = the whole split)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--warmup-paths", type=int, default=0)
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--path-lr", type=float, default=None,
                    help="lr of the measured path training (default: the search's lr there; "
                         "0 leaves only the validation sample's noise)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sets = list(DEFAULT_SETS if args.sets is None else args.sets)
    strategy, env, (data, recipe) = build(args.recipe, sets)
    strategy.setup(env)
    done = warm_up(strategy, env, args.warmup_paths, args.warmup_steps)
    frozen = snapshot(strategy)
    schedule = strategy.pruner.trial_schedule(random.Random(env.seed))
    lr = cosine_lr(strategy.sgd, done, strategy.num_epochs()) if args.path_lr is None \
        else args.path_lr
    pool = held_out_pool(data, recipe)
    result: dict[str, Any] = {
        "recipe": Path(args.recipe).name, "sets": sets, "strategy": recipe.strategy.name,
        "paths": len(schedule), "seeds": args.seeds,
        "warmup_epochs": strategy.config.warmup_epochs, "warmup_paths": args.warmup_paths,
        "warmup_steps": args.warmup_steps, "warmup_images": strategy.weight_images,
        "score_before_training": strategy.config.score_before_training,
        "path_lr": round(lr, 5), "threads": args.threads,
        "settings": [measure(strategy, env, frozen, schedule, pool, s, args.seeds, lr)
                     for s in parse_settings(args.settings)],
    }
    for row in result["settings"]:
        row.update({k: round(v, 4) for k, v in row.items() if isinstance(v, float)})
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
