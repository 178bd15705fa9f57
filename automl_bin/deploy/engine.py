"""`PackedNetwork`: load a packed file and run it on the CPU.

Loading checks the file (`automl_bin.deploy.format`), validates the graph by shape inference,
folds batch norms into the convolutions before them, and builds one executable layer per node.
Running walks the layers in order and drops each intermediate value after its last reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from automl_bin.deploy.format import PackedFile, PackedFileError, read_packed
from automl_bin.deploy.graph import INPUT, Graph, GraphError, infer_shapes
from automl_bin.deploy.layers import Layer, build_layer
from automl_bin.deploy.passes import fold_batchnorm
from automl_bin.errors import UsageError

__all__ = ["PackedNetwork", "load"]


class PackedNetwork:
    """A packed 1-bit network ready to run: ``net(x)`` maps ``(N, C, H, W)`` inputs to logits.

    Inputs are what the PyTorch network takes (normalised as in training), as a numpy array
    or a CPU tensor. ``threads`` sets the compiled kernels' thread count (default: numba's,
    i.e. every core).
    """

    def __init__(self, packed: PackedFile, *, source: str = "the packed file",
                 threads: int | None = None) -> None:
        self.header: Mapping[str, Any] = packed.header
        try:
            graph = Graph.from_dict(packed.header.get("graph"))
            shapes = infer_shapes(graph, packed.tensors)
        except GraphError as exc:
            raise PackedFileError(
                f"{source} has an inconsistent network graph: {exc}. Export the run again with "
                "`automl-bin export RUN_ID --format packed`.") from exc
        self.graph = fold_batchnorm(graph)
        self.input_shape: tuple[int, int, int] = graph.input_shape  # type: ignore[assignment]
        self.num_outputs = shapes[graph.output][0]
        self.threads = threads
        self._layers: list[tuple[str, tuple[str, ...], Layer]] = [
            (node.id, node.inputs, build_layer(node, packed.tensors)) for node in self.graph.nodes]
        # after step i, the values nobody reads any more
        last: dict[str, int] = {}
        for i, node in enumerate(self.graph.nodes):
            for name in node.inputs:
                last[name] = i
        self._free: list[list[str]] = [[] for _ in self.graph.nodes]
        for name, i in last.items():
            if name != graph.output:
                self._free[i].append(name)

    @property
    def genotype(self) -> Any:
        """The `Genotype` the file records, or None."""
        from automl_bin.interfaces import Genotype

        doc = self.header.get("genotype")
        return Genotype.from_dict(doc) if doc else None

    def _check_input(self, x: Any) -> np.ndarray:
        array = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        if array.ndim != 4 or tuple(array.shape[1:]) != tuple(self.input_shape):
            want = "x".join(map(str, self.input_shape))
            raise UsageError(
                f"The packed network takes inputs of shape (N, {', '.join(map(str, self.input_shape))}) "
                f"(batches of {want} images), got {list(array.shape)}; add the batch axis with "
                "x[None] for one image, or resize to the training input size.")
        return np.ascontiguousarray(array, dtype=np.float32)

    def __call__(self, x: Any) -> np.ndarray:
        """Logits ``(N, classes)`` float32 of the inputs ``x`` ``(N, C, H, W)``."""
        values = {INPUT: self._check_input(x)}
        if self.threads is not None:
            import numba

            numba.set_num_threads(self.threads)
        for (name, inputs, layer), free in zip(self._layers, self._free):
            values[name] = layer(*(values[i] for i in inputs))
            for dead in free:
                del values[dead]
        return values[self.graph.output]

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Logits of a large input array, ``batch_size`` samples at a time."""
        array = self._check_input(x)
        parts = [self(array[i:i + batch_size]) for i in range(0, len(array), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.num_outputs), np.float32)


def load(path: str | Path, *, threads: int | None = None) -> PackedNetwork:
    """Load and check a packed network file (`PackedFileError` on a bad file)."""
    return PackedNetwork(read_packed(path), source=f"Packed network {str(path)!r}",
                         threads=threads)
