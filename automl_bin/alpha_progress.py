"""How far a differentiable search has moved α, logged by the runner after every search epoch.

Entropy of softmax(α) is a poor convergence signal: it stays within 1e-4 of ``ln M`` while the
argmax of every edge is still decided by noise. Two direct measures instead, on the operation
weights (``edges × ops`` per cell type, rows summing to 1):

- ``alpha_margin``: the median over all edges of (top-1 − top-2 operation weight). At the
  uniform start it is ~0; a genotype derived at a margin below `MIN_MARGIN` (0.01) rests on
  differences that one more batch could flip.
- ``argmax_changes``: edges whose top operation differs from the previous epoch's.

Plain lists only (no torch), so the runner can use the snapshots it keeps for plots.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

__all__ = ["MIN_MARGIN", "alpha_margin", "argmax_changes", "alpha_progress", "static_alpha_warning"]

#: below this final margin the runner warns that α barely moved
MIN_MARGIN = 0.01

Weights = Mapping[str, Sequence[Sequence[float]]]


def _margin(row: Sequence[float]) -> float:
    top = sorted(row, reverse=True)
    return float(top[0] - top[1]) if len(top) > 1 else 0.0


def _argmax(row: Sequence[float]) -> int:
    return max(range(len(row)), key=lambda j: row[j])


def alpha_margin(weights: Weights) -> float:
    """Median over every edge of every cell type of top-1 − top-2 operation weight."""
    margins = [_margin(row) for rows in weights.values() for row in rows]
    return float(statistics.median(margins)) if margins else 0.0


def argmax_changes(previous: Weights, current: Weights) -> int:
    """Edges whose argmax operation differs between two snapshots (cell types in both only)."""
    changed = 0
    for kind, rows in current.items():
        before = previous.get(kind)
        if before is None or len(before) != len(rows):
            continue
        changed += sum(_argmax(a) != _argmax(b) for a, b in zip(before, rows))
    return changed


def alpha_progress(current: Weights, previous: Weights | None) -> dict[str, float]:
    """``alpha_margin`` and ``argmax_changes`` (0 for the first snapshot) as metrics."""
    return {"alpha_margin": alpha_margin(current),
            "argmax_changes": float(argmax_changes(previous, current) if previous else 0)}


def static_alpha_warning(margin: float, strategy: str) -> str | None:
    """The one-paragraph warning for a search that ended with α barely moved, or None."""
    if margin >= MIN_MARGIN:
        return None
    return (f"Warning: alpha barely moved in this {strategy} search (alpha_margin = {margin:.4f} "
            f"< {MIN_MARGIN}: the median edge's top two operations differ by less than that), so "
            "the derived genotype rests on noise. Give alpha more movement: raise "
            "[strategy] arch_lr, or the number of architecture steps ([strategy] epochs or "
            "rounds, and max_steps), or search a smaller space ([search_space] nodes, ops).")
