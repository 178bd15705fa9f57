"""Speed and size of the packed 1-bit engine against PyTorch float32, on the CPU.

Not a test. In one process, at batch 1 with 2 threads (``torch.set_num_threads`` and
``numba.set_num_threads``), times:

- ``reference``: a 256→256 3×3 binary conv (binary inputs, padding 1) on 14×14, the engine's
  layer (sign packing of the float input included) against ``torch.nn.Conv2d`` in float32;
- ``layers``: the same for every distinct shape of the derived network's binary convolutions
  that run on the xnor-popcount kernel (binary weights and binary inputs);
- ``network``: the whole network, the packed file's engine against the PyTorch model;
- ``size``: the packed file against the float32 state_dict, whole and for the binarized layers
  (`automl_bin.deploy.sizes`), and the reference layer's bits against its float32 weight.

The network is the retrained one of ``--run`` (a run folder of recipes/darts_binary_fmnist.toml),
or, without it, that recipe's [retrain] network with a seeded random genotype and weights
(speed and size do not depend on trained values).

Timing: warm-up, then ``--rounds`` rounds in which each side runs ``--block`` calls in turn
(blocks, not single calls, so that one runtime's spinning worker threads do not land in the
other's timings). Each call is timed; ``min`` is the best call (the uncontended cost, what
timeit recommends reporting) and ``median`` the typical one on this machine at this load
(``load_average`` is printed too). Speed-ups are torch time / packed time for both.

    python bench/deploy.py --run runs/darts-binary-fmnist/<run>
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np
import torch
from torch import nn

from automl_bin.deploy.engine import PackedNetwork
from automl_bin.deploy.export import packed_document
from automl_bin.deploy.format import decode, encode
from automl_bin.deploy.graph import Graph, infer_shapes
from automl_bin.deploy.layers import XnorConv, build_layer
from automl_bin.deploy.sizes import size_report
from automl_bin.nn.qconv import QConv2d
from automl_bin_plugins.binarizers.xnor import XnorBinarizer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "darts_binary_fmnist.toml"
INPUT = (1, 28, 28)
CLASSES = 10


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(torch_fn: Callable[[], object], packed_fn: Callable[[], object],
            rounds: int, block: int) -> dict[str, float]:
    """Per-call times of both sides in alternating blocks; min/median in ms and speed-ups."""
    for _ in range(3):
        torch_fn()
        packed_fn()
    times: dict[str, list[float]] = {"torch": [], "packed": []}
    for _ in range(rounds):
        for name, fn in (("torch", torch_fn), ("packed", packed_fn)):
            times[name] += [timed(fn) for _ in range(block)]
    out: dict[str, float] = {}
    for stat, f in (("min", min), ("median", statistics.median)):
        t, p = f(times["torch"]), f(times["packed"])
        out[f"torch_ms_{stat}"] = round(t * 1e3, 4)
        out[f"packed_ms_{stat}"] = round(p * 1e3, 4)
        out[f"speedup_{stat}"] = round(t / p, 2)
    return out


def conv_pair(cin: int, cout: int, kernel: int, stride: int, padding: int, dilation: int,
              hw: tuple[int, int]) -> tuple[nn.Module, Any, Any]:
    """A float32 torch conv and the engine's packed layer of one shape, and their inputs."""
    binary = QConv2d(cin, cout, kernel, binarizer=XnorBinarizer(), stride=stride,
                     padding=padding, dilation=dilation, binarize_input=True).eval()
    header, tensors = packed_document(nn.Sequential(binary, nn.Flatten()).eval(), (cin, *hw))
    graph = Graph.from_dict(header["graph"])
    layer = build_layer(graph.nodes[0], tensors)
    assert isinstance(layer, XnorConv)
    real = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation,
                     bias=False).eval()
    return real, layer, tensors


def time_conv(shape: dict[str, Any], rounds: int, block: int) -> dict[str, Any]:
    real, layer, _ = conv_pair(shape["in"], shape["out"], shape["kernel"], shape["stride"],
                               shape["padding"], shape["dilation"], tuple(shape["input_hw"]))
    x = torch.randn(1, shape["in"], *shape["input_hw"])
    xn = x.numpy()
    with torch.no_grad():
        return {**shape, **compare(lambda: real(x), lambda: layer(xn), rounds, block)}


def network(run: Path | None) -> tuple[nn.Module, Any]:
    """The derived network: a run's trained one, or the recipe's with a seeded genotype."""
    if run is not None:
        from automl_bin.cli.export import load_run_network

        net, genotype, _, _ = load_run_network(run)
        return net, genotype
    import attrs

    from automl_bin.cli.common import load_and_resolve

    resolved, _ = load_and_resolve(str(RECIPE), ())
    torch.manual_seed(0)
    genotype = resolved.search_space.sample_genotype(random.Random(0))
    net = resolved.search_space.build_network(genotype, INPUT, CLASSES, resolved.binarizer,
                                              attrs.asdict(resolved.network))
    return net.eval(), genotype


def kernel_shapes(graph: Graph, tensors: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Distinct shapes of the graph's convs that run on the xnor kernel, with a count."""
    shapes = infer_shapes(graph, tensors)
    found: dict[tuple, dict[str, Any]] = {}
    for node in graph.nodes:
        a = node.attrs
        if not (node.op == "conv" and a["weight"] == "binary" and a["input"] != "real"
                and a["groups"] == 1):
            continue
        if a["kernel"][0] != a["kernel"][1] or len(set(a["stride"])) != 1:
            continue  # the derived networks use square kernels and strides
        hw = list(shapes[node.inputs[0]][1:])
        key = (a["in_channels"], a["out_channels"], a["kernel"][0], a["stride"][0],
               a["padding"][0], a["dilation"][0], *hw)
        row = found.setdefault(key, {
            "in": key[0], "out": key[1], "kernel": key[2], "stride": key[3], "padding": key[4],
            "dilation": key[5], "input_hw": hw, "count": 0})
        row["count"] += 1
    return list(found.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None,
                        help="a run folder of recipes/darts_binary_fmnist.toml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)

    net, genotype = network(args.run)
    header, tensors = packed_document(net, INPUT, genotype=genotype)
    data = encode(header, tensors)
    packed = decode(data)
    graph = Graph.from_dict(packed.header["graph"])
    engine = PackedNetwork(packed, threads=args.threads)
    sizes = size_report(net, graph, packed.tensors, len(data)).as_dict()

    reference = {"in": 256, "out": 256, "kernel": 3, "stride": 1, "padding": 1, "dilation": 1,
                 "input_hw": [14, 14], "count": 1}
    ref_layer = conv_pair(256, 256, 3, 1, 1, 1, (14, 14))[2]
    ref_bits = sum(t.nbytes for t in ref_layer.values())
    x = torch.randn(1, *INPUT)
    xn = x.numpy()
    with torch.no_grad():
        whole = compare(lambda: net(x), lambda: engine(xn), args.rounds, args.block)
    other_binary = sum(1 for n in graph.nodes if n.op == "conv"
                       and n.attrs["weight"] == "binary" and n.attrs["input"] == "real")
    ref_timing = time_conv(reference, args.rounds, args.block)
    layer_timings = [time_conv(s, args.rounds, args.block)
                     for s in kernel_shapes(graph, packed.tensors)]
    print(json.dumps({
        "bench": "deploy", "batch": 1, "threads": args.threads,
        "network": "run " + str(args.run) if args.run else "recipe, seeded random genotype",
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "cpu": {"count": os.cpu_count(), "numba_threading_layer": numba.threading_layer()},
        "timing": f"{args.rounds} rounds x {args.block} calls per side, alternating blocks",
        "reference_layer": ref_timing,
        "layers": layer_timings,
        "binary_weight_real_input_convs_in_float": other_binary,
        "whole_network": whole,
        "size": {**sizes,
                 "reference_layer_float32_bytes": 256 * 256 * 9 * 4,
                 "reference_layer_packed_bytes": ref_bits,
                 "reference_layer_ratio": round(256 * 256 * 9 * 4 / ref_bits, 2)},
    }))


if __name__ == "__main__":
    main()
