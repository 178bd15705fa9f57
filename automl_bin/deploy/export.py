"""Writing a trained network: the packed format, TorchScript and ONNX.

The packed file's header is self-describing: the genotype, where the network came from, a
layer table (shapes, precision ``weight bits/input bits``, how each weight is stored) and the
graph the engine runs. TorchScript and ONNX export the simulated network as PyTorch runs it
(float ``±scale`` weights, sign activations), for users of those runtimes.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from automl_bin import __version__
from automl_bin.deploy.convert import convert
from automl_bin.deploy.format import write_packed
from automl_bin.deploy.graph import Graph
from automl_bin.deploy.passes import merge_binary_scales
from automl_bin.errors import UsageError

__all__ = ["packed_document", "export_packed", "export_torchscript", "export_onnx",
           "layer_table", "prepare"]

FORMAT_NAME = "automl-bin packed network"


def prepare(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """Put ``model`` in eval mode on the CPU and run it once; returns the example input used.

    The run settles lazily initialised state (a learned scale read from its loaded buffer)
    before anything reads the weights.
    """
    model.eval().cpu()
    example = torch.zeros(2, *input_shape)
    with torch.no_grad():
        model(example)
    return example


def layer_table(graph: Graph) -> list[dict[str, Any]]:
    """One row per conv/linear node: its module, shape, precision and weight storage."""
    rows = []
    for node in graph.nodes:
        a = node.attrs
        if node.op == "conv":
            binary = a["weight"] == "binary"
            merged = a.get("scale_merged_into")
            rows.append({
                "node": node.id, "module": node.source, "op": "conv",
                "shape": [a["out_channels"], a["in_channels"] // a["groups"], *a["kernel"]],
                "stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"],
                "groups": a["groups"],
                "precision": f"{1 if binary else 32}/{32 if a['input'] == 'real' else 1}",
                "weights": "1-bit packed" if binary else "float32",
                "scale": (f"merged into {merged}" if merged else "float32 per channel")
                if binary else None,
            })
        elif node.op == "linear":
            rows.append({"node": node.id, "module": node.source, "op": "linear",
                         "shape": [a["out_features"], a["in_features"]], "precision": "32/32",
                         "weights": "float32"})
    return rows


def packed_document(model: nn.Module, input_shape: Sequence[int], *,
                    genotype: Any = None, source: Mapping[str, Any] | None = None,
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and tensors of ``model``'s packed file (see `export_packed`)."""
    prepare(model, input_shape)
    graph, tensors = convert(model, input_shape)
    graph = merge_binary_scales(graph, tensors)
    header = {
        "format": FORMAT_NAME,
        "created_by": f"automl-bin {__version__}",
        "input_shape": list(graph.input_shape),
        "num_classes": int(model(torch.zeros(1, *input_shape)).shape[1]),
        "genotype": genotype.to_dict() if genotype is not None else None,
        "source": dict(source or {}),
        "layers": layer_table(graph),
        "graph": graph.to_dict(),
    }
    return header, tensors


def export_packed(model: nn.Module, input_shape: Sequence[int], path: str | Path, *,
                  genotype: Any = None, source: Mapping[str, Any] | None = None) -> int:
    """Write ``model`` as a packed file at ``path``; returns its size in bytes.

    ``genotype`` (a `Genotype`) and ``source`` (JSON facts: run, recipe, binarizer) go into the
    header. Raises `UnsupportedError` for a layer the engine cannot run.
    """
    with torch.no_grad():
        header, tensors = packed_document(model, input_shape, genotype=genotype, source=source)
    return write_packed(path, header, tensors)


def export_torchscript(model: nn.Module, input_shape: Sequence[int], path: str | Path) -> int:
    """Trace the simulated network to TorchScript at ``path``; returns the file size."""
    example = prepare(model, input_shape)
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but is still what TorchScript
        # users load; its warnings are about that, not about this model
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    return _write_atomic(Path(path), lambda tmp: tmp.write_bytes(buffer.getvalue()))


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str | Path) -> int:
    """Export the simulated network to ONNX at ``path`` (batch axis dynamic); returns the size.

    Needs the ``onnx`` and ``onnxscript`` packages (``pip install 'automl-bin[export]'``).
    """
    missing = [name for name in ("onnx", "onnxscript") if not _importable(name)]
    if missing:
        raise UsageError(
            f"ONNX export needs the package(s) {', '.join(missing)}, which are not installed. "
            "Install them with `pip install 'automl-bin[export]'` (or `pip install onnx "
            "onnxscript`), or export with --format packed or torchscript.")
    example = prepare(model, input_shape)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, verbose=False,
                                    input_names=["input"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},))
    return _write_atomic(Path(path), lambda tmp: program.save(str(tmp), external_data=False))


def _write_atomic(target: Path, write: Callable[[Path], object]) -> int:
    """``write`` a temporary file beside ``target``, then rename it over ``target`` (a failed
    export never leaves half a file); returns the size. Raises `OSError`."""
    tmp = target.with_name(target.name + ".tmp")
    try:
        write(tmp)
        size = tmp.stat().st_size
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return size


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
