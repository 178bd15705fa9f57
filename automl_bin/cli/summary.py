"""``automl-bin summary TARGET``: a network's per-layer accounting, like ``larq.models.summary``.

TARGET is a run (an MLflow run id or its run folder: the genotype it found, built at the
``[retrain] network`` size), or a recipe (its search supernet, or with ``--genotype`` that
genotype's discrete network). The network is built on the CPU with the recipe's binarizer and
accounted by `automl_bin.accounting.report`; no data is loaded, so the input shape and class
count come from the data set plugin (`Dataset.shape`), or from ``--input-shape`` and
``--num-classes``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs
import click

from automl_bin.cli.common import load_and_resolve, set_option
from automl_bin.errors import UsageError
from automl_bin.recipe import ResolvedRecipe
from automl_bin.tracking.store import run_folder_of

__all__ = ["summary_command", "data_shape"]

def _parse_shape(_ctx: click.Context, _param: click.Parameter,
                 value: str | None) -> tuple[int, int, int] | None:
    if value is None:
        return None
    parts = [p.strip() for p in value.replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise click.BadParameter(f"{value!r} is not C,H,W with three positive integers "
                                 "(e.g. 3,32,32).")
    return shape  # type: ignore[return-value]


def data_shape(resolved: ResolvedRecipe, input_shape: tuple[int, int, int] | None,
               num_classes: int | None) -> tuple[tuple[int, int, int], int]:
    """The ``(C, H, W)`` input and class count of the recipe's data set, without loading it:
    the options where given, else what the data set plugin declares (`Dataset.shape`)."""
    name = resolved.recipe.data.name
    known = resolved.dataset.shape()
    shape = input_shape or (tuple(known.input_shape) if known is not None else None)
    classes = num_classes or (known.num_classes if known is not None else None)
    if shape is None or classes is None:
        missing = " and ".join(opt for opt, v in (("--input-shape C,H,W", shape),
                                                  ("--num-classes N", classes)) if v is None)
        raise UsageError(
            f"summary does not load data, and data set {name!r} does not declare its input "
            f"shape and class count (its plugin's Dataset.shape() returns None); pass "
            f"{missing}, e.g. --input-shape 3,32,32 --num-classes 10."
        )
    return shape, classes  # type: ignore[return-value]


def _run_folder_files(folder: Path, genotype: str | None) -> tuple[Path, Path]:
    recipe = folder / "recipe.toml"
    geno = Path(genotype) if genotype else folder / "genotype.json"
    for path, what in ((recipe, "the recipe as run"), (geno, "the genotype the search found")):
        if not path.is_file():
            raise UsageError(
                f"Run folder {str(folder)!r} has no {path.name} ({what}); the run may have been "
                "stopped before the search ended, or the folder moved. Pass a recipe and "
                "--genotype instead."
            )
    return recipe, geno


def _locate(target: str, genotype: str | None, uri: str | None) -> tuple[Path, Path | None]:
    """The recipe and genotype (None: the supernet) that TARGET names."""
    path = Path(target)
    if path.is_dir():
        return _run_folder_files(path, genotype)
    if path.is_file():
        return path, Path(genotype) if genotype else None
    if path.suffix.lower() in (".toml", ".json") or "/" in target or os.sep in target:
        raise UsageError(f"{target!r} does not exist: pass a recipe .toml, a run folder or an "
                         "MLflow run id.")
    return _run_folder_files(run_folder_of(target, uri), genotype)


def _read_genotype(path: Path) -> Any:
    from automl_bin.interfaces import Genotype

    if not path.is_file():
        raise UsageError(f"Genotype file {str(path)!r} does not exist or is not a file.")
    try:
        return Genotype.from_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{str(path)!r} is not a genotype JSON file (as written to a run "
                         f"folder's genotype.json): {exc}.") from exc


@click.command("summary", epilog="""\b
Examples:
  automl-bin summary runs/quickstart/20250101-120000-1a2b3c
  automl-bin summary 0123456789abcdef0123456789abcdef   # an MLflow run id
  automl-bin summary recipes/quickstart.toml            # the search supernet
  automl-bin summary recipes/quickstart.toml --genotype runs/quickstart/<run>/genotype.json
  automl-bin summary my_data.toml --input-shape 3,64,64 --num-classes 100
  automl-bin summary recipes/quickstart.toml --set binarizer.name=none --json
""")
@click.argument("target")
@click.option("--genotype", "genotype", default=None, type=click.Path(dir_okay=False),
              metavar="PATH", help="Summarise this genotype's discrete network (a genotype.json).")
@click.option("--uri", default=None, metavar="URI",
              help="MLflow store to look a run id up in. Default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///<current folder>/mlflow.db.")
@click.option("--input-shape", default=None, metavar="C,H,W", callback=_parse_shape,
              help="Input shape; needed for data sets whose plugin does not declare it "
                   "(the built-in cifar10, fashion_mnist and synthetic do).")
@click.option("--num-classes", default=None, type=click.IntRange(min=1), metavar="N",
              help="Number of classes; needed for the same data sets as --input-shape.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics and layers as JSON.")
@set_option
def summary_command(target: str, genotype: str | None, uri: str | None,
                    input_shape: tuple[int, int, int] | None, num_classes: int | None,
                    as_json: bool, overrides: tuple[str, ...]) -> None:
    """Print the per-layer accounting of a network: precision, params, bits, FLOPs, BOPs.

    TARGET is an MLflow run id or a run folder (the genotype the run found, at the [retrain]
    network size), or a recipe .toml (its search supernet; with --genotype, that genotype's
    network). The totals give model bits (conv/linear weights, as papers count them), parameter
    bits (every stored value, BN, PReLU and scales included), OPs = FLOPs + BOPs/64, the memory
    saving (weights) and speedup estimate against the same architecture in full precision, and
    both the deployed size (all parameters, packed) and the training footprint (latent float32
    weights). Loads no data.
    """
    from automl_bin.accounting import format_summary, report

    recipe_path, genotype_path = _locate(target, genotype, uri)
    resolved, _ = load_and_resolve(str(recipe_path), overrides)
    shape, classes = data_shape(resolved, input_shape, num_classes)
    space = resolved.search_space
    if genotype_path is not None:
        geno = _read_genotype(genotype_path)
        network = attrs.asdict(resolved.network)
        try:
            net = space.build_network(geno, shape, classes, resolved.binarizer, network)
        except ValueError as exc:
            raise UsageError(f"Genotype {str(genotype_path)!r} does not fit search space "
                             f"{resolved.recipe.search_space.name!r}: {exc}.") from exc
        size = ", ".join(f"{k}={v}" for k, v in network.items())
        what = f"network of genotype {genotype_path} ({size})"
    else:
        net = space.build_supernet(shape, classes, resolved.binarizer)
        what = "search supernet"
    try:
        rep = report(net, shape)
    except RuntimeError as exc:
        raise UsageError(f"The network does not run on a {'x'.join(map(str, shape))} input "
                         f"({' '.join(str(exc).split())[:300]}); check --input-shape.") from exc

    r = resolved.recipe
    if as_json:
        click.echo(json.dumps({
            "target": target,
            "recipe": str(recipe_path),
            "genotype": str(genotype_path) if genotype_path is not None else None,
            "network": "genotype" if genotype_path is not None else "supernet",
            "binarizer": r.binarizer.name,
            "input_shape": list(shape),
            "num_classes": classes,
            "metrics": rep.metrics(),
            "full_precision": {"bits": rep.fp_bits, "ops": rep.fp_ops},
            "binary_params": rep.binary_params,
            "excluded_params": rep.excluded_params,
            "layers": [attrs.asdict(layer) for layer in rep.layers],
        }, indent=2))
        return
    click.echo(f"Summary of the {what}\n  recipe {recipe_path}: "
               f"search_space={r.search_space.name}, binarizer={r.binarizer.name}, "
               f"data={r.data.name} (input {'x'.join(map(str, shape))}, {classes} classes)\n")
    click.echo(format_summary(rep))
