"""`Dataset`: a plugin that loads an image classification data set into memory.

The runner owns splitting (train/val by ``train_portion``, optional ``subset``), batching and
normalisation; a data set plugin only returns the raw train and test tensors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from automl_bin.interfaces.binarizer import EmptyConfig

if TYPE_CHECKING:
    import torch

__all__ = ["Dataset", "DataShape", "DataSplits"]


@attrs.frozen(kw_only=True)
class DataSplits:
    """A loaded data set: uint8 images ``(N, C, H, W)``, int64 labels, and per-channel statistics."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    #: per-channel mean and std of the [0, 1]-scaled training images, used to normalise batches
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_images.shape[1:]
        return (int(c), int(h), int(w))


@attrs.frozen(kw_only=True)
class DataShape:
    """What a network built for a data set needs to know, without loading it."""

    #: ``(C, H, W)`` of one image
    input_shape: tuple[int, int, int]
    num_classes: int


class Dataset(ABC):
    """Loads a data set. ``Config`` holds the plugin's own keys of the recipe's ``[data]`` section."""

    Config: ClassVar[type] = EmptyConfig

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    def shape(self) -> DataShape | None:
        """The input shape and class count `load` will return, known without loading anything
        (constants of the data set, or its ``Config``); None (the default) when only loading
        tells. Commands that build networks without data (``automl-bin summary``, ``export``)
        use it; with None they ask the user for ``--input-shape`` and ``--num-classes``."""
        return None

    @abstractmethod
    def load(self) -> DataSplits:
        """Load the data. Raise `automl_bin.errors.DataNotFoundError` saying how to get it when
        the files are missing and may not be downloaded."""
