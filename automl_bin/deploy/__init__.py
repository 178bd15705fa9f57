"""Deploying a 1-bit network: a packed file format and a compiled xnor-popcount CPU engine.

- `export_packed` (and `export_torchscript`, `export_onnx`) write a network;
- `load` reads a packed file into a `PackedNetwork`, which runs it with numpy and numba.

Names are imported lazily: ``import automl_bin.deploy`` does not import torch or numba.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load", "PackedNetwork", "PackedFileError", "export_packed", "export_torchscript",
           "export_onnx"]

_WHERE = {"load": "engine", "PackedNetwork": "engine", "PackedFileError": "format",
          "export_packed": "export", "export_torchscript": "export", "export_onnx": "export"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"automl_bin.deploy.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
