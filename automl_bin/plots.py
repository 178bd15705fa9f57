"""Plots logged as run artifacts (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_op_weights"]


def plot_op_weights(weights: Mapping[str, Any], op_names: Sequence[str], path: Path,
                    title: str = "operation weights per edge") -> Path:
    """Heat maps (one per cell type) of ``edges × ops`` weights, each cell annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kinds = list(weights)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 0.45 * max(
        len(np.asarray(weights[k])) for k in kinds) + 2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        w = np.asarray(weights[kind], dtype=float)
        im = ax.imshow(w, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(float(w.max()), 1e-9))
        ax.set_title(kind)
        ax.set_xticks(range(len(op_names)))
        ax.set_xticklabels(op_names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(w.shape[0]))
        ax.set_yticklabels([f"edge {i}" for i in range(w.shape[0])], fontsize=7)
        for (i, j), v in np.ndenumerate(w):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5, color="white")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
