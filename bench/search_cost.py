"""Cost of one architecture step: DARTS (first/second order) vs DCP-NAS (exact / GGN / no H·v).

Not a test. In one process, on the same tiny binary supernet (darts space, ``ops = "binary"``,
XNOR binarizer; 5 cells, C = 8, 4 nodes; input 1×28×28, batch 32, synthetic data), times one
architecture step, i.e. everything that produces the α update:

- ``darts1``: first-order DARTS (`BilevelOptimizer.arch_step`, order 1, CE);
- ``darts2``: second-order DARTS (order 2: virtual step + finite-difference HVP);
- ``dcp_exact`` / ``dcp_ggn``: a DCP-NAS Child α step (`DcpNasStrategy.child_arch_step`: the
  Parent's forward/backward for the tangent and p_P, the Child's KL gradient, H·(g − t) by double
  backward or the rank-1 GGN, Adam, decoupled backtrack);
- ``dcp_skip``: the same step with the second-order term skipped (tangent and α gradient
  computed, H·(g − t) not: λ = 0).

Warm-up steps first, then ``--repeats`` rounds in which every variant takes one step
(round-robin, so that machine load drifts hit all variants alike); the median per variant.
Prints ONE JSON line: seconds per step and the ratios ``ggn_over_exact`` (target ≤ 0.5),
``ggn_over_darts2`` (≤ 0.75) and ``ggn_overhead`` (GGN step / skipped step, ≤ 1.1).

    OMP_NUM_THREADS=1 python bench/search_cost.py --repeats 10 --threads 1
"""

from __future__ import annotations

import argparse
import copy
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

TARGETS = {"ggn_over_exact": 0.5, "ggn_over_darts2": 0.75, "ggn_overhead": 1.1}
INPUT = (1, 28, 28)
CLASSES = 10


def build(args: argparse.Namespace) -> dict[str, Callable[[], object]]:
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

    def dcp(**overrides: object) -> Callable[[], object]:
        env = SearchEnv(space=space, binarizer=XnorBinarizer(), input_shape=INPUT,
                        num_classes=CLASSES, device=torch.device("cpu"), seed=0, splits={},
                        reporter=None, create=lambda kind, name, config=None: NoBinarizer())
        cfg = DcpNasConfig(warmup_epochs=0, decoupled=not args.no_decoupled, **overrides)
        strategy = DcpNasStrategy(cfg)
        strategy.setup(env)
        strategy.child.load_state_dict(base_child.state_dict())
        strategy.parent.load_state_dict(base_parent.state_dict())
        strategy.child.train()
        return lambda: strategy.child_arch_step(xv, yv)

    return {
        "darts1": darts(1),
        "darts2": darts(2),
        "dcp_exact": dcp(hessian="exact"),
        "dcp_ggn": dcp(hessian="ggn", ggn_mode="rank1"),
        "dcp_skip": dcp(hessian="ggn", lambda_tangent=0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--no-decoupled", action="store_true",
                        help="DCP-NAS variants without the decoupled backtrack")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    steps = build(args)
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
    ratios = {"ggn_over_exact": sec["dcp_ggn"] / sec["dcp_exact"],
              "ggn_over_darts2": sec["dcp_ggn"] / sec["darts2"],
              "ggn_overhead": sec["dcp_ggn"] / sec["dcp_skip"]}
    out = {"seconds_per_step": {k: round(v, 4) for k, v in sec.items()},
           **{k: round(v, 3) for k, v in ratios.items()},
           "targets": TARGETS,
           "meets_targets": all(ratios[k] <= v for k, v in TARGETS.items()),
           "threads": torch.get_num_threads(), "repeats": args.repeats, "batch": args.batch,
           "decoupled": not args.no_decoupled, "torch": torch.__version__}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
