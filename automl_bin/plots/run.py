"""The plots the runner writes into a phase folder and logs as artifacts of the phase's run.

Search: ``op_weights.png`` (the final operation weights), ``op_weights_epochs.png`` (their
evolution), ``cell_<type>.png`` (each derived cell as a graph) and ``search_curves.png``;
retrain: ``retrain_curves.png``. A plot is a by-product: when one cannot be drawn (no
matplotlib, odd data, a bug) the run says so in one line and goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from automl_bin.diagnostics import metric_name_part
from automl_bin.interfaces import Genotype, Reporter, Strategy

__all__ = ["OpWeightSnapshot", "snapshot_op_weights", "write_curves", "write_search_plots"]

#: ``(epoch, metrics)`` as `Reporter.log_epoch` receives them
EpochMetrics = Sequence[tuple[int, Mapping[str, Any]]]


@attrs.frozen
class OpWeightSnapshot:
    """A strategy's ``edges × ops`` operation weights per cell type after one epoch."""

    epoch: int
    weights: Mapping[str, list[list[float]]]


def _as_lists(value: Any) -> list[list[float]]:
    rows = value.tolist() if hasattr(value, "tolist") else value
    return [[float(v) for v in row] for row in rows]


def snapshot_op_weights(strategy: Strategy, epoch: int,
                        reporter: Reporter) -> OpWeightSnapshot | None:
    """A plain-data copy of ``strategy.op_weights()`` (None when it has none to plot).

    Copied as lists because a strategy may return views of tensors it keeps updating.
    """
    try:
        weights = strategy.op_weights()
        if not weights:
            return None
        return OpWeightSnapshot(epoch, {str(k): _as_lists(v) for k, v in weights.items()})
    except Exception as exc:  # noqa: BLE001 - only plots need the weights
        reporter.info(f"Operation weights of epoch {epoch + 1} not plotted: "
                      f"{type(exc).__name__}: {exc}")
        return None


def _draw(reporter: Reporter, name: str, draw: Callable[[Path], Path | None]) -> Path | None:
    """Run ``draw(reporter.work_dir / name)`` and log the file it wrote; report a failure."""
    try:
        path = draw(reporter.work_dir / name)
    except Exception as exc:  # noqa: BLE001 - a plot must never fail a run
        reporter.info(f"Plot {name} not written: {type(exc).__name__}: {exc}")
        return None
    if path is not None:
        reporter.log_artifact(path)
    return path


def write_search_plots(reporter: Reporter, *, genotype: Genotype | None,
                       op_names: Sequence[str], history: Sequence[OpWeightSnapshot],
                       epochs: EpochMetrics) -> list[Path]:
    """Write and log the search plots (see the module docstring); returns the files written.

    ``history`` holds the epochs' `OpWeightSnapshot` (the last one is the final weights),
    ``epochs`` the per-epoch search metrics.
    """
    from automl_bin.plots.cells import plot_cell
    from automl_bin.plots.curves import plot_curves
    from automl_bin.plots.weights import plot_op_weights, plot_op_weights_epochs

    written = []
    if history:
        final = history[-1].weights
        written.append(_draw(reporter, "op_weights.png",
                             lambda p: plot_op_weights(final, op_names, p)))
        written.append(_draw(reporter, "op_weights_epochs.png", lambda p: plot_op_weights_epochs(
            [(s.epoch, s.weights) for s in history], op_names, p)))
    for name, cell in genotype.cells if genotype is not None else ():
        written.append(_draw(reporter, f"cell_{metric_name_part(name)}.png",
                             lambda p, c=cell, n=name: plot_cell(c, p, title=f"{n} cell")))
    written.append(_draw(reporter, "search_curves.png",
                         lambda p: plot_curves(epochs, p, title="search")))
    return [p for p in written if p is not None]


def write_curves(reporter: Reporter, name: str, epochs: EpochMetrics,
                 title: str = "") -> Path | None:
    """Write and log the training curves of ``epochs`` as ``name``; None when none."""
    from automl_bin.plots.curves import plot_curves

    return _draw(reporter, name, lambda p: plot_curves(epochs, p, title=title or name))
