"""How much smaller the packed file is than the float32 state_dict it came from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
from torch import nn

from automl_bin.deploy.graph import Graph
from automl_bin.nn.qconv import QConv2d

__all__ = ["SizeReport", "size_report"]


@attrs.frozen(kw_only=True)
class SizeReport:
    #: the whole packed file (header, graph, every layer)
    file_bytes: int
    #: the model's whole float32 state_dict (weights, batch-norm statistics, ...)
    state_dict_bytes: int
    #: the state_dict entries of the binarized layers (latent float32 weights, learned scales)
    binarized_float_bytes: int
    #: what the file stores for those layers: their bit words and any per-channel scale left
    #: unmerged (scales merged into the following batch norm are counted with it, not here)
    binarized_packed_bytes: int

    @property
    def file_ratio(self) -> float:
        return self.state_dict_bytes / self.file_bytes

    @property
    def binarized_ratio(self) -> float:
        return self.binarized_float_bytes / max(self.binarized_packed_bytes, 1)

    def as_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "file_ratio": round(self.file_ratio, 2),
                "binarized_ratio": round(self.binarized_ratio, 2)}


def size_report(model: nn.Module, graph: Graph, tensors: Mapping[str, np.ndarray],
                file_bytes: int) -> SizeReport:
    """Sizes of ``model`` (as exported to ``graph``/``tensors``, a file of ``file_bytes``)."""
    state = model.state_dict()
    binarized = [name for name, m in model.named_modules()
                 if isinstance(m, QConv2d) and m.binarize_weight and m.weight_bits == 1]
    float_bytes = sum(t.numel() * t.element_size() for key, t in state.items()
                      if any(key.startswith(f"{name}.") for name in binarized))
    packed = sum(tensors[node.tensors[role]].nbytes for node in graph.nodes
                 if node.op == "conv" and node.attrs.get("weight") == "binary"
                 for role in ("bits", "scale") if role in node.tensors)
    return SizeReport(file_bytes=file_bytes,
                      state_dict_bytes=sum(t.numel() * t.element_size() for t in state.values()),
                      binarized_float_bytes=float_bytes, binarized_packed_bytes=packed)
