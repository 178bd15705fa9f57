"""Built-in data sets: ``cifar10``, ``fashion_mnist`` and ``synthetic``.

Importing this module must stay torch-free so that ``automl-bin check`` and ``automl-bin plugins``
start fast: the data set classes import torch and torchvision inside ``load()`` only.
"""

from __future__ import annotations

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin_plugins.datasets.cifar10 import Cifar10
from automl_bin_plugins.datasets.fashion_mnist import FashionMnist
from automl_bin_plugins.datasets.synthetic import Synthetic

__all__ = ["Cifar10", "FashionMnist", "Synthetic", "register_datasets"]


@hookimpl
def register_datasets(register: Register) -> None:
    """Register the built-in data sets under the names recipes use in ``[data] name``."""
    register("cifar10", Cifar10)
    register("fashion_mnist", FashionMnist)
    register("synthetic", Synthetic)
