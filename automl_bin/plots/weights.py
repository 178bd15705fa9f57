"""Operation-weight heat maps logged as run artifacts: the final weights, and their epochs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_bin.plots.figure import new_figure, save_figure

if TYPE_CHECKING:
    import numpy as np

__all__ = ["pick_rows", "plot_op_weights", "plot_op_weights_epochs"]


def pick_rows(n: int, limit: int) -> list[int]:
    """At most ``limit`` indices of ``range(n)``, evenly spread, always the first and the last."""
    if n <= 0 or limit <= 0:
        return []
    if n <= limit:
        return list(range(n))
    if limit == 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def _matrices(weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The non-empty 2-D ``edges × ops`` matrices of ``weights``, by cell type."""
    import numpy as np

    out = {}
    for kind, value in weights.items():
        w = np.asarray(value.tolist() if hasattr(value, "tolist") else value, dtype=float)
        if w.ndim == 2 and w.size:
            out[str(kind)] = w
    return out


def _op_labels(op_names: Sequence[str], columns: int) -> list[str]:
    # a strategy may plot fewer or more columns than the space has ops: fall back to indices
    return list(op_names) if len(op_names) == columns else [str(i) for i in range(columns)]


def plot_op_weights(weights: Mapping[str, Any], op_names: Sequence[str], path: Path,
                    title: str = "operation weights per edge",
                    edge_labels: Sequence[str] | None = None) -> Path | None:
    """Heat maps (one per cell type) of ``edges × ops`` weights, each cell annotated.

    The colour range is the data's own, so the small differences early in a search show.
    """
    import numpy as np

    mats = _matrices(weights)
    if not mats:
        return None
    fig = new_figure(4.5 * len(mats), 0.45 * max(len(w) for w in mats.values()) + 2)
    axes = fig.subplots(1, len(mats), squeeze=False)
    for ax, (kind, w) in zip(axes[0], mats.items()):
        lo, hi = float(w.min()), float(w.max())
        im = ax.imshow(w, aspect="auto", cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-9)
        ax.set_title(kind)
        ax.set_xticks(range(w.shape[1]))
        ax.set_xticklabels(_op_labels(op_names, w.shape[1]), rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(w.shape[0]))
        labels = edge_labels if edge_labels and len(edge_labels) == w.shape[0] else [
            f"edge {i}" for i in range(w.shape[0])]
        ax.set_yticklabels(labels, fontsize=7)
        for (i, j), v in np.ndenumerate(w):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=5, color="white")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_op_weights_epochs(history: Sequence[tuple[int, Mapping[str, Any]]],
                           op_names: Sequence[str], path: Path, max_rows: int = 8,
                           title: str = "operation weights per epoch") -> Path | None:
    """A grid of ``edges × ops`` heat maps: one row per epoch, one column per cell type.

    ``history`` holds ``(epoch, weights)`` as `plot_op_weights` takes them; at most
    ``max_rows`` epochs are drawn, evenly spread and always including the last. Each column
    shares one colour range, so the rows compare: a column whose mass moves to one op (e.g.
    ``skip_connect``) over the rows is a search settling on it.
    """
    rows = [(int(epoch), mats) for epoch, weights in history if (mats := _matrices(weights))]
    rows = [rows[i] for i in pick_rows(len(rows), max_rows)]
    if not rows:
        return None
    kinds = list(dict.fromkeys(kind for _, mats in rows for kind in mats))
    n_edges = max(len(w) for _, mats in rows for w in mats.values())
    width, height = 4.2 * len(kinds) + 1.0, len(rows) * (0.16 * n_edges + 0.5) + 1.9
    fig = new_figure(width, height)
    axes = fig.subplots(len(rows), len(kinds), squeeze=False)
    # fixed margins in inches (labels 0.8 left, colour bar labels 0.7 right, rotated op names
    # 1.1 below, titles 0.8 above): a layout engine would measure every tick label of every
    # panel, slow for a large grid
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.7 / width, bottom=1.1 / height,
                        top=1 - 0.8 / height, wspace=0.25, hspace=0.15)
    for c, kind in enumerate(kinds):
        present = [mats[kind] for _, mats in rows if kind in mats]
        lo = min(float(w.min()) for w in present)
        hi = max(float(w.max()) for w in present)
        image = None
        for r, (epoch, mats) in enumerate(rows):
            ax = axes[r][c]
            if kind not in mats:
                ax.set_axis_off()
                continue
            w = mats[kind]
            image = ax.imshow(w, aspect="auto", cmap="viridis", vmin=lo,
                              vmax=hi if hi > lo else lo + 1e-9)
            ax.set_yticks(range(w.shape[0]))
            ax.set_yticklabels([f"e{i}" for i in range(w.shape[0])], fontsize=5)
            ax.set_xticks(range(w.shape[1]))
            # op names once per column, under its last row: the columns are the same ops
            if r == len(rows) - 1:
                ax.set_xticklabels(_op_labels(op_names, w.shape[1]), rotation=60, ha="right",
                                   fontsize=7)
            else:
                ax.set_xticklabels([])
            if r == 0:
                ax.set_title(kind)
            if c == 0:
                ax.set_ylabel(f"epoch {epoch + 1}")
        if image is not None:
            fig.colorbar(image, ax=list(axes[:, c]), shrink=min(0.8, 3 / len(rows)), pad=0.02)
    fig.suptitle(title, y=1 - 0.2 / height, va="top")
    return save_figure(fig, path, dpi=90)
