"""Does the exported network classify the Fashion-MNIST test set like the PyTorch model?

    automl-bin export RUN_ID --format packed --out model.abin
    python bench/deploy_accuracy.py RUN_FOLDER model.abin [--data-root data]

Prints one JSON line: the test accuracy of the PyTorch model (the run's model.pt) and of the
packed engine, how often their top-1 predictions agree and the largest relative logit
difference. For runs of recipes/darts_binary_fmnist.toml (or any fashion_mnist recipe).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from automl_bin.cli.export import load_run_network
from automl_bin.deploy import load
from automl_bin_plugins.datasets.fashion_mnist import FashionMnist, FashionMnistConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("packed", type=Path)
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net, _, _, _ = load_run_network(args.run_folder)
    data = FashionMnist(FashionMnistConfig(root=args.data_root, download=False)).load()
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x = (data.test_images.float() / 255 - mean) / std  # the loader's own normalisation
    y = data.test_labels.numpy()
    t0 = time.perf_counter()
    with torch.no_grad():
        ref = torch.cat([net(x[i:i + 500]) for i in range(0, len(x), 500)]).numpy()
    t_torch = time.perf_counter() - t0
    engine = load(args.packed, threads=args.threads)
    t0 = time.perf_counter()
    packed = engine.predict(x.numpy(), batch_size=500)
    t_packed = time.perf_counter() - t0
    print(json.dumps({
        "n": int(len(y)),
        "torch_acc": float((ref.argmax(1) == y).mean()),
        "packed_acc": float((packed.argmax(1) == y).mean()),
        "top1_agree": float((packed.argmax(1) == ref.argmax(1)).mean()),
        "max_rel_logit_diff": float(np.abs(packed - ref).max() / np.abs(ref).max()),
        "seconds_torch": round(t_torch, 2), "seconds_packed": round(t_packed, 2)}))


if __name__ == "__main__":
    main()
