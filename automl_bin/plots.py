"""Plots logged as run artifacts (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_op_weights"]


def plot_op_weights(weights: Mapping[str, Any], op_names: Sequence[str], path: Path,
                    title: str = "operation weights per edge",
                    edge_labels: Sequence[str] | None = None) -> Path:
    """Heat maps (one per cell type) of ``edges × ops`` weights, each cell annotated.

    The colour range is the data's own, so the small differences early in a search show.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kinds = list(weights)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 0.45 * max(
        len(np.asarray(weights[k])) for k in kinds) + 2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        w = np.asarray(weights[kind], dtype=float)
        lo, hi = float(w.min()), float(w.max())
        im = ax.imshow(w, aspect="auto", cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-9)
        ax.set_title(kind)
        ax.set_xticks(range(len(op_names)))
        ax.set_xticklabels(op_names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(w.shape[0]))
        labels = edge_labels if edge_labels and len(edge_labels) == w.shape[0] else [
            f"edge {i}" for i in range(w.shape[0])]
        ax.set_yticklabels(labels, fontsize=7)
        for (i, j), v in np.ndenumerate(w):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=5, color="white")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
