"""Tests of the built-in data set plugins (cifar10, fashion_mnist, synthetic) on tiny fake files."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import attrs
import numpy as np
import pytest
import torch

from automl_bin.errors import DataNotFoundError
from automl_bin.interfaces import Dataset, DataShape
from automl_bin_plugins.datasets import Cifar10, FashionMnist, Synthetic, register_datasets
from automl_bin_plugins.datasets.fashion_mnist import RAW_FILES

CIFAR_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
]


# ------------------------------------------------------------------------------------------ cifar10


def _write_cifar(root: Path, per_batch: int = 2, test_size: int = 3) -> dict[str, np.ndarray]:
    """Write a tiny cifar-10-batches-py folder; return the raw (N, 3072) rows of each split."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        split = "test" if name == "test_batch" else "train"
        n = test_size if split == "test" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        batch_labels = [int(x) for x in rng.integers(0, 10, size=n)]
        entry = {
            "batch_label": name,
            "labels": batch_labels,
            "data": data,
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(entry))
        rows[split].append(data)
        labels[split].extend(batch_labels)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_CLASSES}))
    return {
        "train": np.concatenate(rows["train"]),
        "test": np.concatenate(rows["test"]),
        "train_labels": np.array(labels["train"]),
        "test_labels": np.array(labels["test"]),
    }


@pytest.fixture
def no_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake files cannot match CIFAR-10's MD5s: check only that they exist (tests only)."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def test_cifar10_loads_fake_batches(tmp_path: Path, no_md5: None) -> None:
    written = _write_cifar(tmp_path)
    splits = Cifar10(Cifar10.Config(root=str(tmp_path))).load()

    assert splits.train_images.shape == (10, 3, 32, 32)
    assert splits.test_images.shape == (3, 3, 32, 32)
    assert splits.train_images.dtype == torch.uint8 and splits.test_images.dtype == torch.uint8
    assert splits.train_labels.dtype == torch.int64 and splits.test_labels.dtype == torch.int64
    assert splits.train_labels.tolist() == written["train_labels"].tolist()
    assert splits.test_labels.tolist() == written["test_labels"].tolist()
    # A row holds the R, G and B planes in turn, each row-major: pixel (c, h, w) is c*1024+h*32+w.
    for split, images in (("train", splits.train_images), ("test", splits.test_images)):
        expected = torch.from_numpy(written[split].reshape(-1, 3, 32, 32))
        assert torch.equal(images, expected)
    assert splits.train_images[1, 2, 5, 7] == int(written["train"][1, 2 * 1024 + 5 * 32 + 7])
    assert splits.num_classes == 10
    assert splits.input_shape == (3, 32, 32)
    assert Cifar10().shape() == DataShape(input_shape=splits.input_shape, num_classes=10)
    assert splits.class_names == tuple(CIFAR_CLASSES)
    assert splits.mean == (0.4914, 0.4822, 0.4465)
    assert splits.std == (0.2470, 0.2435, 0.2616)


def test_cifar10_missing_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        Cifar10(Cifar10.Config(root=str(tmp_path / "nowhere"))).load()
    message = str(info.value)
    assert "download = true" in message
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "--set data.root=" in message
    assert info.value.exit_code == 2


def test_cifar10_download_failure_is_data_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.cifar as tv_cifar

    def offline(*_args: object, **_kwargs: object) -> None:
        raise URLError("Temporary failure in name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataNotFoundError, match="Could not download CIFAR-10"):
        Cifar10(Cifar10.Config(root=str(tmp_path), download=True)).load()


# ------------------------------------------------------------------------------------ fashion_mnist


def _idx_images(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def _write_system_dir(folder: Path) -> dict[str, np.ndarray]:
    """Gzipped IDX files laid out like Debian's dataset-fashion-mnist package."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=6, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=4, dtype=np.uint8),
    }
    for name, array in arrays.items():
        payload = _idx_images(array) if "images" in name else _idx_labels(array)
        (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
    return arrays


def test_fashion_mnist_copies_from_system_dir(tmp_path: Path) -> None:
    arrays = _write_system_dir(tmp_path / "system")
    root = tmp_path / "root"
    config = FashionMnist.Config(root=str(root), system_dir=str(tmp_path / "system"))
    splits = FashionMnist(config).load()

    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(RAW_FILES)  # no temp files left over
    assert splits.train_images.shape == (6, 1, 28, 28)
    assert splits.test_images.shape == (4, 1, 28, 28)
    assert splits.train_images.dtype == torch.uint8
    assert splits.train_labels.dtype == torch.int64 and splits.test_labels.dtype == torch.int64
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"]).unsqueeze(1)
    assert torch.equal(splits.train_images, expected)
    assert splits.test_labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert splits.num_classes == 10 and len(splits.class_names) == 10
    assert FashionMnist().shape() == DataShape(input_shape=splits.input_shape, num_classes=10)
    assert splits.mean == (0.2860,) and splits.std == (0.3530,)

    # A second load reads the raw files already in root, even with the system copy gone.
    for gz in (tmp_path / "system").iterdir():
        gz.unlink()
    assert torch.equal(FashionMnist(config).load().train_images, expected)


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path: Path) -> None:
    config = FashionMnist.Config(root=str(tmp_path / "root"), system_dir=str(tmp_path / "none"))
    with pytest.raises(DataNotFoundError) as info:
        FashionMnist(config).load()
    message = str(info.value)
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "download = true" in message
    assert "--set data.root=" in message


def test_fashion_mnist_download_failure_is_data_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.mnist as tv_mnist

    def offline(*_args: object, **_kwargs: object) -> None:
        raise URLError("Temporary failure in name resolution")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    config = FashionMnist.Config(root=str(tmp_path), download=True, system_dir=str(tmp_path / "x"))
    with pytest.raises(DataNotFoundError, match="Could not download Fashion-MNIST"):
        FashionMnist(config).load()


# ---------------------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_balanced() -> None:
    config = Synthetic.Config(num_classes=3, channels=2, image_size=8, train_size=30, test_size=9)
    a = Synthetic(config).load()
    b = Synthetic(config).load()
    other = Synthetic(attrs.evolve(config, seed=1)).load()

    assert a.train_images.shape == (30, 2, 8, 8) and a.test_images.shape == (9, 2, 8, 8)
    assert a.train_images.dtype == torch.uint8 and a.train_labels.dtype == torch.int64
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_images, b.test_images)
    assert torch.equal(a.train_labels, b.train_labels) and a.mean == b.mean and a.std == b.std
    assert not torch.equal(a.train_images, other.train_images)
    assert torch.bincount(a.train_labels).tolist() == [10, 10, 10]
    assert torch.bincount(a.test_labels).tolist() == [3, 3, 3]
    assert a.num_classes == 3 and len(a.mean) == 2 and len(a.std) == 2
    assert a.input_shape == (2, 8, 8)
    assert Synthetic(config).shape() == DataShape(input_shape=(2, 8, 8), num_classes=3)


@pytest.mark.parametrize(
    "bad",
    [
        {"num_classes": 1},
        {"channels": 0},
        {"image_size": 3},
        {"train_size": 7},
        {"test_size": 0},
        {"noise": -0.1},
    ],
)
def test_synthetic_config_rejects_out_of_range(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Synthetic.Config(**bad)


def test_synthetic_is_learnable() -> None:
    splits = Synthetic().load()
    mean = torch.tensor(splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.std).view(1, -1, 1, 1)

    def features(images: torch.Tensor) -> torch.Tensor:
        return ((images.float() / 255.0 - mean) / std).flatten(1)

    x, x_test = features(splits.train_images), features(splits.test_images)
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], splits.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(200):  # full-batch logistic regression
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), splits.train_labels).backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == splits.test_labels).float().mean().item()
    assert accuracy > 0.8


# ------------------------------------------------------------------------------------- registration


def test_register_datasets_registers_the_three_built_ins() -> None:
    registered: list[tuple[str, type]] = []
    register_datasets(lambda name, cls: registered.append((name, cls)))
    assert sorted(name for name, _ in registered) == ["cifar10", "fashion_mnist", "synthetic"]
    assert all(issubclass(cls, Dataset) for _, cls in registered)


def test_import_does_not_load_torch() -> None:
    code = "import sys; import automl_bin_plugins.datasets; print('torch' in sys.modules)"
    # The environment (PYTHONPATH included) passes through, so this works before installation too.
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=True,
    )
    assert result.stdout.strip() == "False"
