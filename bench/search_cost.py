"""Cost of one architecture step: DARTS (first/second order) vs DCP-NAS (exact / GGN / no H·v).

Not a test. In one process, on the same tiny binary supernet (darts space, ``ops = "binary"``,
XNOR binarizer; 5 cells, C = 8, 4 nodes; input 1×28×28, batch 32, synthetic data), times one
architecture step, i.e. everything that produces the α update:

- ``darts1``: first-order DARTS (`BilevelOptimizer.arch_step`, order 1, CE);
- ``darts2``: second-order DARTS (order 2: virtual step + finite-difference HVP);
- ``gdas``: a GDAS α step (`GdasStrategy`: first order on one Gumbel-sampled op per edge,
  straight through, so only that op runs), reported as ``gdas_over_darts1`` too;
- ``dcp_exact``, ``dcp_per_sample``, ``dcp_gauss_newton``, ``dcp_rank1``: a DCP-NAS Child α step
  (`DcpNasStrategy.child_arch_step`: the Parent's forward/backward for the tangent and p_P, the
  Child's KL gradient, H·(g − t) by double backward, the per-sample Fisher (the default), the
  Gauss-Newton product or the rank-1 batch-gradient estimate, Adam, decoupled backtrack);
- ``dcp_skip``: the same step with the second-order term skipped (tangent and α gradient
  computed, H·(g − t) not: λ = 0).

Warm-up steps first, then ``--repeats`` rounds in which every variant takes one step
(round-robin, so that machine load drifts hit all variants alike); the median per variant.
Prints ONE JSON line: seconds per step; the ratios ``per_sample_over_exact`` (target ≤ 0.5),
``per_sample_overhead`` (per-sample step / skipped step, ≤ 1.2) and the same for the other
variants; and ``cos_total_g`` per variant: the cosine between the Child's α gradient ``g`` and
the total ``g + 2λ·H(g − t)`` at the default λ (1.0 means the second-order term only rescales
``g``, as the rank-1 estimate does; the target for ``per_sample`` is < 0.999) with the median
``tangent_ratio`` ‖2λ·H(g − t)‖/‖g‖. The supernet first trains its weights for
``--train-steps`` steps (α is near-uniform at the start, where every product is small).

    OMP_NUM_THREADS=1 python bench/search_cost.py --repeats 10 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import statistics
import time
from collections.abc import Callable

import torch

from automl_bin.interfaces import SearchEnv
from automl_bin.search.bilevel import ArchConfig, BilevelOptimizer
from automl_bin.training import SgdConfig, make_sgd
from automl_bin_plugins.binarizers.none import NoBinarizer
from automl_bin_plugins.binarizers.xnor import XnorBinarizer
from automl_bin_plugins.darts_space.space import DartsConfig, DartsSpace
from automl_bin_plugins.strategies.dcp_nas import DcpNasConfig, DcpNasStrategy
from automl_bin_plugins.strategies.gdas import GdasConfig, GdasStrategy

TARGETS = {"per_sample_over_exact": 0.5, "per_sample_overhead": 1.2}
VARIANTS = {"dcp_exact": dict(hessian="exact"),
            "dcp_per_sample": dict(hessian="ggn", ggn_mode="per_sample"),
            "dcp_gauss_newton": dict(hessian="ggn", ggn_mode="gauss_newton"),
            "dcp_rank1": dict(hessian="ggn", ggn_mode="rank1"),
            "dcp_skip": dict(hessian="ggn", lambda_tangent=0.0)}
INPUT = (1, 28, 28)
CLASSES = 10


def build(args: argparse.Namespace
          ) -> tuple[dict[str, Callable[[], object]], dict[str, DcpNasStrategy]]:
    """The timed steps by variant name, and the DCP-NAS strategy behind each DCP variant."""
    space = DartsSpace(DartsConfig(layers=5, init_channels=8, nodes=4, ops="binary"))
    torch.manual_seed(0)
    base_child = space.build_supernet(INPUT, CLASSES, XnorBinarizer())
    base_parent = space.build_supernet(INPUT, CLASSES, NoBinarizer())
    g = torch.Generator().manual_seed(1)
    xt, xv = (torch.randn(args.batch, *INPUT, generator=g) for _ in range(2))
    yt, yv = (torch.randint(0, CLASSES, (args.batch,), generator=g) for _ in range(2))
    arch = ArchConfig()
    sgd = SgdConfig()

    def darts(order: int) -> Callable[[], object]:
        net = copy.deepcopy(base_child).train()
        bl = BilevelOptimizer(net, make_sgd(net.weight_parameters(), sgd), arch, order=order)
        return lambda: bl.arch_step(xt, yt, xv, yv)

    trained = _trained_state(args, space, base_child, base_parent)

    def dcp(**overrides: object) -> DcpNasStrategy:
        strategy = _dcp(space, args, **overrides)
        strategy.child.load_state_dict(trained[0])
        strategy.parent.load_state_dict(trained[1])
        strategy.child.train()
        return strategy

    strategies = {name: dcp(**overrides) for name, overrides in VARIANTS.items()}
    steps: dict[str, Callable[[], object]] = {"darts1": darts(1), "darts2": darts(2)}
    for name, strategy in strategies.items():
        steps[name] = functools.partial(strategy.child_arch_step, xv, yv)
    # built last: its setup draws from torch's RNG, which must not move the DCP variants
    gdas = gdas_strategy(space, base_child)
    steps["gdas"] = lambda: gdas.bilevel.arch_step(xt, yt, xv, yv)
    return steps, strategies


def gdas_strategy(space: DartsSpace, supernet: torch.nn.Module) -> GdasStrategy:
    """A `GdasStrategy` on a copy of ``supernet`` (same weights and α), in training mode."""
    env = SearchEnv(space=space, binarizer=XnorBinarizer(), input_shape=INPUT,
                    num_classes=CLASSES, device=torch.device("cpu"), seed=0, splits={},
                    reporter=None)
    strategy = GdasStrategy(GdasConfig(warmup_epochs=0))
    strategy.setup(env)
    strategy.supernet.load_state_dict(supernet.state_dict())
    strategy.supernet.train()
    return strategy


def _dcp(space: DartsSpace, args: argparse.Namespace, **overrides: object) -> DcpNasStrategy:
    env = SearchEnv(space=space, binarizer=XnorBinarizer(), input_shape=INPUT,
                    num_classes=CLASSES, device=torch.device("cpu"), seed=0, splits={},
                    reporter=None, create=lambda kind, name, config=None: NoBinarizer())
    cfg = DcpNasConfig(warmup_epochs=0, decoupled=not args.no_decoupled, **overrides)
    strategy = DcpNasStrategy(cfg)
    strategy.setup(env)
    return strategy


def _trained_state(args: argparse.Namespace, space: DartsSpace, child: torch.nn.Module,
                   parent: torch.nn.Module) -> tuple[dict, dict]:
    """Child and Parent after ``--train-steps`` DCP-NAS steps (weights and α) on a fixed
    synthetic task whose labels depend on the input, so that the gradients carry signal."""
    strategy = _dcp(space, args)
    strategy.child.load_state_dict(child.state_dict())
    strategy.parent.load_state_dict(parent.state_dict())
    g = torch.Generator().manual_seed(2)
    proj = torch.randn(INPUT[0] * INPUT[1] * INPUT[2], CLASSES, generator=g)
    for _ in range(args.train_steps):
        x = torch.randn(args.batch, *INPUT, generator=g)
        y = (x.flatten(1) @ proj).argmax(1)
        strategy.parent_bl.weight_step(x, y)
        strategy.parent_arch_step(x, y, x, y)
        strategy.child_arch_step(x, y)
        strategy.child_bl.weight_step(x, y)
    return strategy.child.state_dict(), strategy.parent.state_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=20,
                        help="DCP-NAS steps taken before timing (moves α off uniform)")
    parser.add_argument("--no-decoupled", action="store_true",
                        help="DCP-NAS variants without the decoupled backtrack")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    steps, strategies = build(args)
    for fn in steps.values():
        for _ in range(args.warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    sec = {name: statistics.median(ts) for name, ts in times.items()}
    ratios = {}
    for name in ("per_sample", "gauss_newton", "rank1"):
        ratios[f"{name}_over_exact"] = sec[f"dcp_{name}"] / sec["dcp_exact"]
        ratios[f"{name}_overhead"] = sec[f"dcp_{name}"] / sec["dcp_skip"]
    ratios["per_sample_over_darts2"] = sec["dcp_per_sample"] / sec["darts2"]
    ratios["gdas_over_darts1"] = sec["gdas"] / sec["darts1"]
    effects = {name: {"cos_total_g": round(statistics.median(s.effects["tangent_cos"]), 5),
                      "tangent_ratio": round(statistics.median(s.effects["tangent_ratio"]), 4)}
               for name, s in strategies.items() if s.effects.get("tangent_cos")}
    out = {"seconds_per_step": {k: round(v, 4) for k, v in sec.items()},
           **{k: round(v, 3) for k, v in ratios.items()},
           "effects": effects, "lambda_tangent": DcpNasConfig().lambda_tangent,
           "meets_cos": effects.get("dcp_per_sample", {}).get("cos_total_g", 1.0) < 0.999,
           "targets": TARGETS,
           "meets_targets": all(ratios[k] <= v for k, v in TARGETS.items()),
           "threads": torch.get_num_threads(), "repeats": args.repeats, "batch": args.batch,
           "decoupled": not args.no_decoupled, "torch": torch.__version__}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
