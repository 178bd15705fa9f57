"""Data sets that do not add up are refused with a clear error, never trained on silently:
swapped label files, truncated IDX files, labels out of range, a subset or batch size larger
than the data (issue 19 item 12). Tiny generated files only; nothing is downloaded."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch

from automl_bin.data import check_splits, make_splits
from automl_bin.errors import DataNotFoundError, UsageError
from automl_bin.testing import tiny_data
from automl_bin_plugins.datasets import Cifar10, FashionMnist

COUNTS = {"train-images-idx3-ubyte": 6, "train-labels-idx1-ubyte": 6,
          "t10k-images-idx3-ubyte": 4, "t10k-labels-idx1-ubyte": 4}


def _idx(name: str, n: int) -> bytes:
    rng = np.random.default_rng(n)
    if "images" in name:
        return struct.pack(">IIII", 2051, n, 28, 28) + rng.integers(0, 256, n * 784, np.uint8).tobytes()
    return struct.pack(">II", 2049, n) + rng.integers(0, 10, n, np.uint8).tobytes()


def _fashion(tmp_path: Path, **replace: bytes) -> FashionMnist:
    """Raw IDX files in root/FashionMNIST/raw (``replace`` swaps a file's bytes)."""
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, n in COUNTS.items():
        (raw / name).write_bytes(replace.get(name.replace("-", "_"), _idx(name, n)))
    return FashionMnist(FashionMnist.Config(root=str(tmp_path / "root"),
                                            system_dir=str(tmp_path / "none")))


def test_intact_fashion_files_load(tmp_path):
    splits = _fashion(tmp_path).load()
    assert splits.train_images.shape[0] == 6 and splits.test_labels.shape[0] == 4


def test_swapped_label_file_is_refused(tmp_path):
    test_labels = _idx("t10k-labels-idx1-ubyte", 4)
    with pytest.raises(UsageError) as err:
        _fashion(tmp_path, train_labels_idx1_ubyte=test_labels).load()
    msg = str(err.value)
    assert "6 images in train-images-idx3-ubyte but 4 labels in train-labels-idx1-ubyte" in msg
    assert "do not belong together" in msg and "Delete both" in msg


@pytest.mark.parametrize("name,cut", [("train_images_idx3_ubyte", 100), ("t10k_labels_idx1_ubyte", 2),
                                      ("train_labels_idx1_ubyte", 10)])
def test_truncated_idx_file_says_truncated(tmp_path, name, cut):
    data = _idx(name.replace("_", "-"), COUNTS[name.replace("_", "-")])
    with pytest.raises(UsageError) as err:
        _fashion(tmp_path, **{name: data[:cut]}).load()
    msg = str(err.value)
    assert name.replace("_", "-") in msg and "not found" not in msg
    assert "truncated" in msg and "Delete it" in msg
    assert not isinstance(err.value, DataNotFoundError)


def test_cifar_labels_out_of_range_are_refused(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: Path(fpath).is_file())
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [3, 12] if name == "data_batch_2" else [0, 9]
        entry = {"labels": labels, "data": np.zeros((2, 3072), np.uint8)}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    with pytest.raises(UsageError, match=r"CIFAR-10 in .* has train labels from 0 to 12, but 10 "
                                         r"classes \(labels 0 to 9\)"):
        Cifar10(Cifar10.Config(root=str(tmp_path))).load()


def _splits(**kwargs):
    args = {"batch_size": 16, "eval_batch_size": 64, "train_portion": 0.5, "subset": None,
            "seed": 0, "device": torch.device("cpu"), **kwargs}
    return make_splits(tiny_data(), **args)  # 96 training images


def test_subset_larger_than_the_data_is_refused():
    assert _splits(subset=96)["train"].num_samples == 48
    with pytest.raises(UsageError, match=r"subset = 100,000 is more than the 96 training images.*"
                                         r"--set data.subset=96"):
        _splits(subset=100_000)


def test_batch_larger_than_the_search_split_is_refused():
    assert len(_splits(batch_size=48)["train"]) == 1
    with pytest.raises(UsageError, match=r"batch_size = 64 is more than the 48 images.*"
                                         r"--set data.batch_size=48"):
        _splits(batch_size=64)
    with pytest.raises(UsageError, match="batch_size = 16 is more than the 10 images .*subset of 20"):
        _splits(subset=20)


def test_check_splits_counts():
    data = tiny_data()
    check_splits(data)
    short = attrs.evolve(data, train_labels=data.train_labels[:10])
    with pytest.raises(UsageError, match="96 train images but 10 train labels"):
        check_splits(short, "The tiny set")
