"""``automl-bin export RUN_ID``: write a run's retrained network as a packed 1-bit file,
TorchScript or ONNX.

RUN_ID is an MLflow run id or a run folder (as for ``automl-bin summary``); the network is
rebuilt from the folder's recipe.toml and genotype.json and loaded from its model.pt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import click

from automl_bin.cli.summary import _read_genotype, data_shape
from automl_bin.errors import UsageError
from automl_bin.tracking.store import run_folder_of

__all__ = ["export_command"]

#: default file name in the run folder, per format
DEFAULT_NAMES = {"packed": "model.abin", "torchscript": "model.torchscript.pt",
                 "onnx": "model.onnx"}


def run_folder(target: str, uri: str | None) -> Path:
    """The run folder TARGET names: a folder, or an MLflow run id looked up in ``uri``."""
    path = Path(target)
    if path.is_dir():
        return path
    if path.exists() or "/" in target or "\\" in target or path.suffix:
        raise UsageError(f"{target!r} is not a run folder: pass a folder under runs/ holding "
                         "recipe.toml, genotype.json and model.pt, or an MLflow run id.")
    return run_folder_of(target, uri)


#: files whose presence beside a ``recipe.toml`` makes a folder a run (or suite) folder
_RUN_MARKERS = ("genotype.json", "summary.json", "announcements.json", "search_checkpoint.pt")


def _is_run_folder(path: Path) -> bool:
    return (path / "recipe.toml").is_file() and any((path / m).exists() for m in _RUN_MARKERS)


def _run_folder_holding(path: Path) -> Path | None:
    """The run folder ``path`` lies in (at any depth), else None."""
    return next((p for p in path.parents if _is_run_folder(p)), None)


def destination(out: str | None, folder: Path, fmt: str, *, force: bool) -> Path:
    """The file to write: ``--out``, else the format's default name in the run folder.

    A new file may go anywhere whose folder exists and is writable. An existing file is
    replaced only with ``force``, and never when it belongs to a run folder (the run's weights,
    checkpoints, recipe...), except an earlier export of that folder (its default names).
    """
    path = Path(out) if out else folder / DEFAULT_NAMES[fmt]
    shown = str(path)
    real = path.resolve()  # a link is judged by what it points to
    if real.is_dir():
        raise UsageError(f"--out {shown!r} is a folder; name the file to write, e.g. "
                         f"--out {str(path / DEFAULT_NAMES[fmt])!r}.")
    if not real.parent.is_dir():
        raise UsageError(f"The folder of --out {shown!r} does not exist; create it first, or "
                         "pass a path in an existing folder.")
    if not os.access(real.parent, os.W_OK):
        raise UsageError(f"Cannot write {shown!r}: its folder {str(real.parent)!r} is not "
                         "writable. Pass --out with a path in a folder you can write to.")
    if not (real.exists() or real.is_symlink()):
        return path
    owner = _run_folder_holding(real)
    if not real.is_file() or (owner is not None and not (
            real.parent == owner and real.name in DEFAULT_NAMES.values())):
        where = f"a file of the run folder {str(owner)!r}" if owner else "not a regular file"
        raise UsageError(f"--out {shown!r} already exists and is {where}; export never "
                         "replaces it (not even with --force). Pass --out with a new file "
                         "name" + (" outside run folders." if owner else "."))
    if not force:
        raise UsageError(f"--out {shown!r} already exists; pass --force to replace it, or "
                         "choose another --out.")
    return path


def _write(path: Path, write: Callable[[], int]) -> int:
    """``write()``, with an operating-system error as a one-paragraph usage error."""
    try:
        return write()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        what = f"creating {exc.filename!r} failed: " if exc.filename else ""
        raise UsageError(f"Cannot write the exported network to {str(path)!r} ({what}{reason}); "
                         "its folder does not accept new files. Pass --out with a path in a "
                         "folder you can write to.") from exc


def load_run_network(folder: Path) -> tuple[Any, Any, tuple[int, int, int], Any]:
    """The retrained network of a run folder (eval mode, weights loaded), its genotype, input
    shape and resolved recipe."""
    import torch

    from automl_bin.cli.common import load_and_resolve

    files = {name: folder / name for name in ("recipe.toml", "genotype.json", "model.pt")}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise UsageError(
            f"Run folder {str(folder)!r} has no {', '.join(missing)}: only a run whose "
            "retraining finished can be exported (model.pt is written at its end). Pick a "
            "finished run in `automl-bin ui`, or run the recipe to the end.")
    resolved, _ = load_and_resolve(str(files["recipe.toml"]), ())
    shape, classes = data_shape(resolved, None, None)
    genotype = _read_genotype(files["genotype.json"])
    try:
        net = resolved.search_space.build_network(genotype, shape, classes, resolved.binarizer,
                                                  attrs.asdict(resolved.network))
        state = torch.load(files["model.pt"], map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UsageError(
            f"{files['model.pt']} does not load into the network its recipe and genotype build "
            f"({' '.join(str(exc).split())[:300]}); the folder's files may come from different "
            "runs. Export an unmodified run folder.") from exc
    return net.eval(), genotype, shape, resolved


def _verify(net: Any, path: Path, shape: tuple[int, int, int]) -> str:
    """Run the packed file and the PyTorch network on the same random inputs; one line."""
    import numpy as np
    import torch

    from automl_bin.deploy import load

    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net(x).numpy()
    got = load(path)(x)
    rel = float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-12))
    agree = int((got.argmax(1) == expected.argmax(1)).sum())
    return (f"checked: on 16 random inputs the packed engine's logits are within {rel:.1e} "
            f"(relative) of PyTorch's; {agree}/16 top-1 classes agree")


@click.command("export", epilog="""\b
Examples:
  automl-bin export runs/darts-binary-fmnist/20250101-120000-1a2b3c
  automl-bin export 0123456789abcdef0123456789abcdef --format packed --out model.abin
  automl-bin export RUN_ID --format torchscript
  automl-bin export RUN_ID --format onnx --out model.onnx   # needs automl-bin[export]
""")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(sorted(DEFAULT_NAMES)), default="packed",
              show_default=True, help="packed: 1-bit weights in bits, for automl_bin.deploy; "
                                      "torchscript/onnx: the simulated float network.")
@click.option("--out", default=None, metavar="PATH",
              help="Output file. Default: model.abin, model.torchscript.pt or model.onnx in the "
                   "run folder. An existing file is replaced only with --force, and never a "
                   "file of a run folder (its earlier exports excepted).")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--uri", default=None, metavar="URI",
              help="MLflow store to look a run id up in. Default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///<current folder>/mlflow.db.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="After a packed export, run the file and compare it with PyTorch.")
def export_command(run_id: str, fmt: str, out: str | None, force: bool, uri: str | None,
                   verify: bool) -> None:
    """Export the retrained network of a run.

    RUN_ID is an MLflow run id or a run folder. `packed` writes the file that
    automl_bin.deploy.load() runs with xnor-popcount kernels: a checked header (genotype, layer
    shapes and precisions, the graph), 1-bit weights 64 to a word, real-valued layers in
    float32. `torchscript` and `onnx` write the simulated network as PyTorch runs it.
    """
    from automl_bin.deploy import export as exporter

    folder = run_folder(run_id, uri)
    net, genotype, shape, resolved = load_run_network(folder)
    path = destination(out, folder, fmt, force=force)
    r = resolved.recipe
    if fmt == "torchscript":
        size = _write(path, lambda: exporter.export_torchscript(net, shape, path))
    elif fmt == "onnx":
        size = _write(path, lambda: exporter.export_onnx(net, shape, path))
    else:
        source = {"run_folder": str(folder.resolve()), "experiment": r.experiment.name,
                  "search_space": r.search_space.name, "binarizer": r.binarizer.name,
                  "data": r.data.name}
        size = _write(path, lambda: exporter.export_packed(net, shape, path, genotype=genotype,
                                                          source=source))
    click.echo(f"Wrote {fmt} network of {folder} to {path} ({size:,} bytes).")
    if fmt == "packed":
        from automl_bin.deploy.format import read_packed
        from automl_bin.deploy.graph import Graph
        from automl_bin.deploy.sizes import size_report

        packed = read_packed(path)
        sizes = size_report(net, Graph.from_dict(packed.header["graph"]), packed.tensors, size)
        click.echo(f"  float32 state_dict {sizes.state_dict_bytes:,} bytes "
                   f"({sizes.file_ratio:.1f}x the file); binarized layers "
                   f"{sizes.binarized_float_bytes:,} bytes in float32, "
                   f"{sizes.binarized_packed_bytes:,} packed ({sizes.binarized_ratio:.1f}x "
                   "smaller)")
        if verify:
            click.echo("  " + _verify(net, path, shape))
