"""The comparison's plots: test accuracy against search cost, and against a swept value.

Both take the rows of `automl_bin.compare.build_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_bin.plots.figure import new_figure, save_figure

if TYPE_CHECKING:
    from automl_bin.compare import Row

__all__ = ["plot_accuracy_vs_cost", "plot_sweep"]


def _finish(fig: Any, ax: Any, title: str, path: str | Path) -> Path:
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, Path(path), dpi=120)


def plot_accuracy_vs_cost(rows: Sequence[Row], path: str | Path) -> Path | None:
    """Test accuracy (mean ± std) against search seconds, one marker per row; None if no row
    has both."""
    points = [r for r in rows if r.acc_mean is not None and r.search_seconds is not None]
    if not points:
        return None
    fig = new_figure(7, 4.5)
    ax = fig.subplots()
    markers = "osD^vP*Xh<>"
    for i, r in enumerate(points):
        name = r.label + "".join(f" {k}={v}" for k, v in r.sweep)
        ax.errorbar(r.search_seconds, 100 * r.acc_mean, yerr=100 * (r.acc_std or 0.0),
                    fmt=markers[i % len(markers)], capsize=3, label=f"{name} (N={r.runs})")
    ax.set_xlabel(f"search cost (seconds, {', '.join(sorted({r.device for r in points}))})")
    return _finish(fig, ax, "accuracy vs search cost", path)


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def plot_sweep(rows: Sequence[Row], key: str, path: str | Path) -> Path | None:
    """Test accuracy against the swept ``key``: one line per label (the other swept keys
    averaged away by grouping on them too); None when no row swept ``key``."""
    series: dict[str, list[tuple[str, float, float]]] = {}
    for r in rows:
        swept = dict(r.sweep)
        if key not in swept or r.acc_mean is None:
            continue
        others = " ".join(f"{k}={v}" for k, v in r.sweep if k != key)
        name = f"{r.label} {others}".strip()
        series.setdefault(name, []).append((swept[key], 100 * r.acc_mean, 100 * (r.acc_std or 0)))
    if not series:
        return None
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    categories = sorted({x for pts in series.values() for x, _, _ in pts},
                        key=lambda x: (_as_number(x) is None, _as_number(x) or 0.0, x))
    numeric = all(_as_number(x) is not None for x in categories)
    for name, pts in series.items():
        pts.sort(key=lambda p: categories.index(p[0]))
        xs = [_as_number(x) if numeric else categories.index(x) for x, _, _ in pts]
        ax.errorbar(xs, [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    label=name)
    if not numeric:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(key)
    return _finish(fig, ax, f"test accuracy vs {key}", path)
