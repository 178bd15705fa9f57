"""Data-parallel scaling of the DARTS search step on CPU: 1 process vs 2 (torchrun, gloo).

Not a test. Times first-order DARTS search steps (`BilevelOptimizer.arch_step` +
`weight_step`, i.e. what `darts` does per batch pair) on a small real-valued supernet (darts
space, 3 cells, C = 8, 3 nodes; input 1×16×16; global batch 64 of synthetic data), first in one
process, then in two torchrun processes that each take half of every batch and average their
gradients (`automl_bin.distributed`). Every process has one thread. The two settings are
measured ``--repeats`` times in alternation (so a passing load spike hits both) and the medians
are compared. Prints ONE JSON line:

    {"images_per_s_1proc": ..., "images_per_s_2proc": ..., "ratio": ..., "ratios": [...],
     "repeats": ..., "load_avg_1min": ...}

``ratio`` is median 2proc / median 1proc (on an otherwise idle 2-core machine ≥ 1.3 is
expected), ``ratios`` the ratio of each alternating pair, ``load_avg_1min`` the machine's load
when the benchmark started (anything else running skews the result).

    python bench/scaling.py --steps 20 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INPUT = (1, 16, 16)
CLASSES = 10


def worker(args: argparse.Namespace) -> None:
    """One rank (or the single process): time ``args.steps`` search steps after a warm-up."""
    import torch

    from automl_bin import distributed
    from automl_bin.search.bilevel import ArchConfig, BilevelOptimizer
    from automl_bin.training import SgdConfig, make_sgd
    from automl_bin_plugins.binarizers.none import NoBinarizer
    from automl_bin_plugins.darts_space.space import DartsConfig, DartsSpace

    torch.set_num_threads(1)
    ctx = distributed.from_env("cpu")
    torch.manual_seed(0)
    net = DartsSpace(DartsConfig(layers=3, init_channels=8, nodes=3)).build_supernet(
        INPUT, CLASSES, NoBinarizer()).train()
    bl = BilevelOptimizer(net, make_sgd(net.weight_parameters(), SgdConfig()), ArchConfig(),
                          dist=ctx)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(args.batch, *INPUT, generator=g),
                torch.randint(0, CLASSES, (args.batch,), generator=g)) for _ in range(4)]

    def step(i: int) -> None:
        xt, yt = distributed.shard(*batches[i % 4], ctx)
        xv, yv = distributed.shard(*batches[(i + 1) % 4], ctx)
        bl.arch_step(xt, yt, xv, yv)
        bl.weight_step(xt, yt)

    for i in range(args.warmup):
        step(i)
    if ctx is not None:
        torch.distributed.barrier()
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i)
    if ctx is not None:
        torch.distributed.barrier()
    seconds = time.perf_counter() - t0
    if ctx is None or ctx.is_main:
        Path(args.out).write_text(json.dumps({"images_per_s": args.batch * args.steps / seconds}))
    distributed.shutdown(ctx)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(nproc: int, args: argparse.Namespace) -> float:
    out = Path(tempfile.mkdtemp()) / "result.json"
    me = [str(Path(__file__).resolve()), "--worker", "--out", str(out), "--steps",
          str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch)]
    if nproc == 1:
        cmd = [sys.executable, *me]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={_free_port()}", *me]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process, as the docs say
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return float(json.loads(out.read_text())["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="alternating 1-/2-process runs")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64, help="global batch (split over ranks)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    load = os.getloadavg()[0]
    ones, twos = [], []
    for _ in range(max(1, args.repeats)):
        ones.append(measure(1, args))
        twos.append(measure(2, args))
    one, two = statistics.median(ones), statistics.median(twos)
    print(json.dumps({"images_per_s_1proc": round(one, 2), "images_per_s_2proc": round(two, 2),
                      "ratio": round(two / one, 3),
                      "ratios": [round(b / a, 3) for a, b in zip(ones, twos)],
                      "repeats": len(ones), "load_avg_1min": round(load, 2)}))


if __name__ == "__main__":
    main()
