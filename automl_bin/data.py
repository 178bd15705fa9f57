"""In-memory batching of image tensors: train/val split, subsets, normalisation, augmentation.

Whole-dataset uint8 tensors normalised per batch run an epoch about 3x faster than a PIL +
ToTensor pipeline on CPU. The batch order depends only on (seed, split, epoch), so a resumed run
sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

from automl_bin.errors import UsageError
from automl_bin.interfaces import DataSplits

__all__ = ["TensorBatches", "make_splits", "check_splits"]


class TensorBatches:
    """Mini-batches of one split, normalised on the fly and moved to ``device``."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device,
        seed: int,
        salt: int,
        augment: bool = False,
        cutout: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.salt = salt
        self.augment = augment
        self.cutout = cutout
        self.drop_last = drop_last
        self._stats = (mean, std)
        c = images.shape[1]
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1).to(device)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1).to(device)

    def with_options(self, *, batch_size: int | None = None, augment: bool | None = None,
                     cutout: int | None = None) -> TensorBatches:
        """The same split with another batch size or augmentation (e.g. for retraining)."""
        return TensorBatches(
            self.images, self.labels,
            batch_size=self.batch_size if batch_size is None else batch_size,
            mean=self._stats[0], std=self._stats[1], device=self.device, seed=self.seed,
            salt=self.salt, augment=self.augment if augment is None else augment,
            cutout=self.cutout if cutout is None else cutout, drop_last=self.drop_last)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _prepare(self, idx: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx].to(self.device, non_blocking=True).float().div_(255.0)
        if self.augment and gen is not None:
            x = _crop_flip(x, gen)
        if self.cutout and gen is not None:
            x = _cutout(x, gen, self.cutout)
        x = (x - self._mean) / self._std
        return x, self.labels[idx].to(self.device, non_blocking=True)

    def batches(self, epoch: int, shuffle: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.num_samples
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.salt * 7919 + epoch)
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and idx.numel() < self.batch_size:
                break
            yield self._prepare(idx, gen if shuffle else None)


def _crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding ``pad`` and horizontal flip, one draw per batch element."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def _cutout(x: torch.Tensor, gen: torch.Generator, length: int) -> torch.Tensor:
    """Zero one ``length``×``length`` square per image (DeVries & Taylor; DARTS retraining)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=gen)
    cx = torch.randint(0, w, (n,), generator=gen)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    half = length // 2
    inside = ((ys - cy.view(n, 1, 1)).abs() <= half) & ((xs - cx.view(n, 1, 1)).abs() <= half)
    return x * (~inside).unsqueeze(1).to(x.device, x.dtype)


def check_splits(data: DataSplits, where: str = "The data set") -> None:
    """Raise a UsageError unless each split has as many labels as images, all in
    ``0 .. num_classes - 1``: files of different splits mixed up would otherwise train to chance
    without a word. ``where`` names the data set (and its folder) in the message."""
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        n_images, n_labels = int(images.shape[0]), int(labels.shape[0])
        if n_images != n_labels:
            raise UsageError(
                f"{where} has {n_images:,} {split} images but {n_labels:,} {split} labels: its "
                "image and label files do not belong together (e.g. the test labels copied over "
                "the training labels). Restore the data set's original files.")
        if n_images == 0:
            raise UsageError(f"{where} has no {split} images. Restore the data set's files.")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= data.num_classes:
            raise UsageError(
                f"{where} has {split} labels from {low} to {high}, but {data.num_classes} classes "
                f"(labels 0 to {data.num_classes - 1}): its label files are not this data set's. "
                "Restore the data set's original files.")


def _check_sizes(n: int, subset: int | None, n_train: int, batch_size: int) -> None:
    """Refuse (rather than silently cut) a subset or batch size the data cannot fill."""
    if subset is not None and subset > n:
        raise UsageError(
            f"[data] subset = {subset:,} is more than the {n:,} training images of the data set. "
            f"Lower it (e.g. --set data.subset={n}) or remove it to search on all images.")
    if batch_size > n_train:
        images = f"subset of {subset:,}" if subset is not None else f"{n:,} training images"
        raise UsageError(
            f"[data] batch_size = {batch_size} is more than the {n_train:,} images the search "
            f"trains weights on (train_portion of the {images}), so every epoch would be one "
            f"short batch. Lower it (e.g. --set data.batch_size={n_train}) or use more images.")


def make_splits(
    data: DataSplits,
    *,
    batch_size: int,
    eval_batch_size: int,
    train_portion: float,
    subset: int | None,
    seed: int,
    device: torch.device,
    augment: bool = False,
) -> Mapping[str, TensorBatches]:
    """Split the training set into ``train``/``val`` (``train_portion``) and keep ``test``.

    ``subset`` limits the images the *search* uses (train + val); ``train_full`` is always the
    whole training set, which the final network is retrained on. The split is a seeded
    permutation, so it is the same for every strategy run with the same seed and data.
    Mismatched splits (`check_splits`), a ``subset`` larger than the training set and a
    ``batch_size`` larger than the search's training split are a UsageError.
    """
    check_splits(data)
    n = int(data.train_labels.shape[0])
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    if subset is not None:
        order = order[: min(subset, n)]
    n_train = max(1, int(round(len(order) * train_portion)))
    if n_train >= len(order):
        n_train = len(order) - 1
    _check_sizes(n, subset, n_train, batch_size)
    train_idx, val_idx = order[:n_train].sort().values, order[n_train:].sort().values

    def make(images: torch.Tensor, labels: torch.Tensor, salt: int, bs: int, aug: bool) -> TensorBatches:
        return TensorBatches(images, labels, batch_size=bs, mean=data.mean, std=data.std,
                             device=device, seed=seed, salt=salt, augment=aug)

    ti, tl = data.train_images, data.train_labels
    return {
        "train": make(ti[train_idx], tl[train_idx], 1, batch_size, augment),
        "val": make(ti[val_idx], tl[val_idx], 2, batch_size, False),
        "train_full": make(ti, tl, 3, batch_size, augment),
        "test": make(data.test_images, data.test_labels, 4, eval_batch_size, False),
    }
