"""Training curves of one phase (search or retrain) from its per-epoch metrics."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from automl_bin.plots.figure import new_figure, save_figure

__all__ = ["CurvePanel", "curve_panels", "plot_curves"]

#: metrics that carry no learning signal: wall time and the retrain stage code
_SKIPPED = frozenset({"epoch_seconds", "stage"})
_COLLAPSE = "collapse (ops per cell)"


@attrs.frozen
class CurvePanel:
    """One axes of the figure: its title and the metric keys drawn in it."""

    title: str
    keys: tuple[str, ...]


def _drawn(key: str) -> bool:
    # the per-op histogram (arch.<cell>.op.<op>) is too many lines; skip/param_free tell collapse
    return key not in _SKIPPED and not (key.startswith("arch.") and ".op." in key)


def curve_panels(keys: Iterable[str], max_panels: int = 12) -> list[CurvePanel]:
    """Group metric keys into panels: losses, accuracies, the ``arch.*`` collapse counts, then
    one panel per other metric (their scales differ), at most ``max_panels`` in all."""
    groups: dict[str, list[str]] = {"loss": [], "accuracy": [], _COLLAPSE: []}
    others: list[str] = []
    for key in dict.fromkeys(keys):
        if not _drawn(key):
            continue
        if key.startswith("arch."):
            groups[_COLLAPSE].append(key)
        elif "loss" in key:
            groups["loss"].append(key)
        elif "acc" in key:
            groups["accuracy"].append(key)
        else:
            others.append(key)
    panels = [CurvePanel(title, tuple(ks)) for title, ks in groups.items() if ks]
    panels += [CurvePanel(key, (key,)) for key in sorted(others)]
    return panels[:max_panels]


def _style(panel: CurvePanel, key: str, index: int) -> dict[str, str]:
    """Line colour and style: in the collapse panel one colour per cell type, solid for the
    skip count and dashed for the parameter-free count, so the pairs read together."""
    if panel.title != _COLLAPSE:
        return {"color": f"C{index % 10}"}
    cells = list(dict.fromkeys(k.split(".")[1] for k in panel.keys))
    return {"color": f"C{cells.index(key.split('.')[1]) % 10}",
            "linestyle": "-" if key.endswith("skip_connect") else "--"}


def _series(epochs: Sequence[tuple[int, Mapping[str, object]]]) -> dict[str, list[tuple[int, float]]]:
    """``key -> [(epoch + 1, value)]`` of the finite numeric values (1-based, as printed)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for epoch, metrics in epochs:
        for key, value in metrics.items():
            if isinstance(value, numbers.Real) and math.isfinite(value):
                out.setdefault(str(key), []).append((int(epoch) + 1, float(value)))
    return out


def plot_curves(epochs: Sequence[tuple[int, Mapping[str, object]]], path: Path,
                title: str = "training curves") -> Path | None:
    """Draw the per-epoch metrics ``epochs`` (``(epoch, metrics)`` pairs) grouped by
    `curve_panels`; None when there is no numeric metric to draw."""
    series = _series(epochs)
    panels = curve_panels(series)
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    height = 3.2 * rows + 0.6
    fig = new_figure(4.6 * cols, height)
    axes = fig.subplots(rows, cols, squeeze=False)
    # fixed margins: a layout engine measures every tick label and doubles the drawing time
    fig.subplots_adjust(left=0.07 * 3 / cols, right=0.98, bottom=0.5 / height,
                        top=1 - 0.55 / height, wspace=0.3, hspace=0.45)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    for ax, panel in zip(axes.flat, panels):
        values: list[float] = []
        for i, key in enumerate(panel.keys):
            xs, ys = zip(*series[key])
            values += ys
            ax.plot(xs, ys, marker="o", markersize=3, label=key, **_style(panel, key, i))
        ax.set_title(panel.title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ticks = sorted({x for key in panel.keys for x, _ in series[key]})
        if len(ticks) <= 12:  # few epochs: tick each (one epoch would get ticks at 0.96 ...)
            ax.set_xticks(ticks)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        if panel.title == "loss" and min(values) > 0 and max(values) > 100 * min(values):
            ax.set_yscale("log")  # auxiliary losses (e.g. recon_loss) are orders smaller
        if panel.title == _COLLAPSE:
            ax.set_ylim(bottom=-0.2)  # a count of 0 stays visible above the axis
            ax.yaxis.get_major_locator().set_params(integer=True)
        if len(panel.keys) > 1:
            ax.legend(fontsize=6)
    fig.suptitle(title)
    return save_figure(fig, path)
