"""Capture a network's penultimate features during its forward pass.

Feature-level losses (the CP-NAS intra-class compactness term, book §4.3 p.104) need the
globally pooled last-conv features of the batch, which ``model(x)`` does not return. A network
exposes the module producing them as ``feature_module`` (DARTS networks: their global pooling
layer); `capture_features` hooks it for the duration of a ``with`` block, so trainers get the
features without the network's forward signature changing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["FeatureCapture", "capture_features"]


class FeatureCapture:
    """Holds the last output of the hooked module, flattened to ``(N, D)``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        #: the last captured features (N, D); None before a forward or without a feature_module
        self.value: torch.Tensor | None = None


@contextmanager
def capture_features(model: nn.Module) -> Iterator[FeatureCapture]:
    """Record the output of ``model.feature_module`` in every forward inside the block.

    Yields a `FeatureCapture` whose ``.value`` is the last output flattened to ``(N, D)`` (still
    attached to the autograd graph, so a loss on it trains the network). When the model has no
    ``feature_module`` the value stays None and nothing is hooked. The hook is removed on exit.
    """
    capture = FeatureCapture()
    module = getattr(model, "feature_module", None)
    if not isinstance(module, nn.Module):
        yield capture
        return

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        capture.value = output.flatten(1)

    handle = module.register_forward_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()
