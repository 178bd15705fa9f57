"""Fashion-MNIST through torchvision's `FashionMNIST`, fed offline from the Debian package.

Debian's ``dataset-fashion-mnist`` installs the gzipped IDX files in
``/usr/share/datasets/fashion-mnist``. torchvision reads the *uncompressed* files from
``<root>/FashionMNIST/raw/``, so they are decompressed there once (about 0.3 s). Symlinking the
``.gz`` files would not do: their checksums differ from torchvision's list and it would then try
to download.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import struct
import tempfile

import attrs

from automl_bin.errors import DataNotFoundError, UsageError
from automl_bin.interfaces import Dataset, DataShape, DataSplits

__all__ = ["FashionMnist", "FashionMnistConfig", "RAW_FILES", "check_raw_files"]

#: the uncompressed IDX files torchvision expects in <root>/FashionMNIST/raw/
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# Statistics of the Fashion-MNIST training images scaled to [0, 1].
_MEAN = (0.2860,)
_STD = (0.3530,)


@attrs.frozen(kw_only=True)
class FashionMnistConfig:
    """Keys of ``[data]`` when ``name = "fashion_mnist"``."""

    #: folder that holds (or will receive) FashionMNIST/raw; relative to the working directory
    root: str = "data"
    #: fetch the files from the internet when they are missing
    download: bool = False
    #: where Debian's dataset-fashion-mnist package puts the gzipped files, copied into root
    system_dir: str = "/usr/share/datasets/fashion-mnist"


def raw_folder(root: str) -> str:
    """The folder torchvision's FashionMNIST reads its uncompressed files from."""
    return os.path.join(root, "FashionMNIST", "raw")


def _gunzip_atomic(src: str, dst: str) -> None:
    """Decompress ``src`` into ``dst`` via a temp file, so a crash never leaves a partial file
    that torchvision (which checks only that the files exist) would then read."""
    name = os.path.basename(dst)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, length=1 << 20)
        os.replace(tmp, dst)
    except BaseException:
        os.unlink(tmp)
        raise


def _idx_count(path: str, fix: str) -> int:
    """The item count an IDX file of unsigned bytes declares, after checking the file holds
    exactly what its header declares (torchvision reports a short file as "not found")."""
    name = os.path.basename(path)
    dims = 3 if "images" in name else 1
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4 + 4 * dims)
    if len(head) < 4 or struct.unpack(">I", head[:4])[0] != 0x800 + dims:
        raise UsageError(f"{path} is not an IDX file of {'images' if dims == 3 else 'labels'} "
                         f"(truncated or another file). {fix}")
    if len(head) < 4 + 4 * dims:
        raise UsageError(f"{path} is truncated: {size} bytes, less than its header. {fix}")
    shape = struct.unpack(f">{dims}I", head[4:])
    expected = 4 + 4 * dims + math.prod(shape)
    if size != expected:
        problem = "is truncated" if size < expected else "is longer than it should be"
        raise UsageError(f"{path} {problem}: {size:,} bytes, its header declares {expected:,} "
                         f"({' x '.join(map(str, shape))} bytes of data). {fix}")
    return shape[0]


def check_raw_files(raw: str, system_dir: str) -> None:
    """Raise a UsageError naming the file when a raw IDX file in ``raw`` is truncated or not
    IDX, or when a split's image and label files hold different counts (the test labels copied
    over the training labels would otherwise train to chance). Missing files are left to
    torchvision, which reports them as not found."""
    counts: dict[str, int] = {}
    for name in RAW_FILES:
        path = os.path.join(raw, name)
        fix = (f"Delete it so that it is copied again from {system_dir} (Debian's "
               "dataset-fashion-mnist) or downloaded again with `[data] download = true`.")
        if os.path.isfile(path):
            counts[name] = _idx_count(path, fix)
    for split in ("train", "t10k"):
        images, labels = f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"
        if images in counts and labels in counts and counts[images] != counts[labels]:
            raise UsageError(
                f"{raw} has {counts[images]:,} images in {images} but {counts[labels]:,} labels "
                f"in {labels}: the files do not belong together (a label file of the other "
                f"split?). Delete both so that they are copied again from {system_dir} or "
                "downloaded again with `[data] download = true`.")


def install_from_system(root: str, system_dir: str) -> bool:
    """Decompress the missing raw files from ``system_dir`` into ``root``.

    :return: True when files were written; False when nothing was missing or ``system_dir`` lacks
        one of the missing files (then torchvision reports, or downloads, as configured).
    """
    raw = raw_folder(root)
    missing = [name for name in RAW_FILES if not os.path.isfile(os.path.join(raw, name))]
    sources = [os.path.join(system_dir, f"{name}.gz") for name in missing]
    if not missing or not all(os.path.isfile(src) for src in sources):
        return False
    os.makedirs(raw, exist_ok=True)
    for name, src in zip(missing, sources):
        _gunzip_atomic(src, os.path.join(raw, name))
    return True


class FashionMnist(Dataset):
    """Fashion-MNIST: 60,000 training and 10,000 test grey images of 28x28 pixels, 10 classes."""

    Config = FashionMnistConfig

    def shape(self) -> DataShape:
        return DataShape(input_shape=(1, 28, 28), num_classes=10)

    def load(self) -> DataSplits:
        """Load both splits as uint8 ``(N, 1, 28, 28)`` images and int64 labels."""
        import torch
        from torchvision.datasets import FashionMNIST

        from automl_bin.data import check_splits

        root = os.path.abspath(os.path.expanduser(self.config.root))
        system_dir = os.path.expanduser(self.config.system_dir)
        try:
            install_from_system(root, system_dir)
        except (OSError, EOFError) as exc:
            # An unwritable root or a truncated .gz is something the user fixes, not a crash.
            raise DataNotFoundError(
                f"Could not copy Fashion-MNIST from {system_dir} into {raw_folder(root)} ({exc}). "
                "Point to a writable folder with --set data.root=PATH, or reinstall the files with "
                "`apt-get install --reinstall -y dataset-fashion-mnist`."
            ) from exc
        check_raw_files(raw_folder(root), system_dir)
        try:
            train = FashionMNIST(root, train=True, download=self.config.download)
            test = FashionMNIST(root, train=False, download=False)
        except (RuntimeError, OSError) as exc:
            raise DataNotFoundError(self._message(root, system_dir, exc)) from exc

        splits = DataSplits(
            train_images=train.data.unsqueeze(1).contiguous(),
            train_labels=train.targets.to(torch.int64),
            test_images=test.data.unsqueeze(1).contiguous(),
            test_labels=test.targets.to(torch.int64),
            num_classes=10,
            mean=_MEAN,
            std=_STD,
            class_names=tuple(train.classes),
        )
        check_splits(splits, f"Fashion-MNIST in {raw_folder(root)}")
        return splits

    def _message(self, root: str, system_dir: str, exc: BaseException) -> str:
        raw = raw_folder(root)
        offline = "`apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu, offline)"
        elsewhere = (
            "--set data.root=PATH pointing at a folder that holds FashionMNIST/raw with the four "
            "uncompressed IDX files"
        )
        if self.config.download:
            return (
                f"Could not download Fashion-MNIST into {raw} ({_one_line(exc)}). This machine "
                f"may have no internet access; instead run {offline}, or use {elsewhere}."
            )
        return (
            f"Fashion-MNIST was not found in {raw} nor in {system_dir}. Run {offline}, set "
            f"`[data] download = true` in the recipe (needs internet), or use {elsewhere}."
        )


def _one_line(exc: BaseException) -> str:
    """The error's text on one line: torchvision's download errors span several lines."""
    return " ".join(str(exc).split())
