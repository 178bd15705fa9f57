"""A genotype's cell drawn as a graph, with matplotlib only (no graphviz to install).

Node numbering is the genotype's (`automl_bin.interfaces.genotype`): 0 and 1 are the cell
inputs ``c_{k-2}`` and ``c_{k-1}``, 2, 3, ... the intermediate nodes (drawn as 0, 1, ... as in
the DARTS paper), and the nodes of ``Cell.concat`` feed the output ``c_{k}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import attrs

from automl_bin.interfaces.genotype import Cell
from automl_bin.plots.figure import new_figure, save_figure

__all__ = ["CellLayout", "cell_layout", "plot_cell"]

#: the key of the output node in `CellLayout.positions`
OUTPUT = -1
_STEP = 1.6  # horizontal distance between successive intermediate nodes
_RADIUS = 0.32
#: bends tried for an arrow, least first; alternate sides so a second pass can dodge the first
_BENDS = (0.12, -0.12, 0.3, -0.3, 0.5, -0.5, 0.7, -0.7)
#: how far apart two op labels' centres must be, across and up (data units): a label is about
#: 0.8 wide and 0.25 tall at the figure's scale
_LABEL_BOX = (0.8, 0.28)

Point = tuple[float, float]


@attrs.frozen
class CellLayout:
    """Where each node of a cell is drawn (``OUTPUT`` is the cell output) and its label."""

    positions: dict[int, tuple[float, float]]
    labels: dict[int, str]


def cell_layout(cell: Cell) -> CellLayout:
    """Inputs on the left, intermediate nodes left to right in a zigzag, the output right.

    The zigzag keeps an edge that skips a node (``j → j+2``) from running through it.
    """
    inner = sorted({n for e in cell.edges for n in (e.source, e.target)} | set(cell.concat))
    inner = [n for n in inner if n >= 2]
    positions = {0: (0.0, 1.4), 1: (0.0, -1.4)}
    labels = {0: "$c_{k-2}$", 1: "$c_{k-1}$", OUTPUT: "$c_{k}$"}
    for i, node in enumerate(inner):
        positions[node] = (_STEP * (i + 1), 0.9 if i % 2 == 0 else -0.9)
        labels[node] = str(node - 2)
    positions[OUTPUT] = (_STEP * (len(inner) + 1), 0.0)
    return CellLayout(positions=positions, labels=labels)


def _curve(a: Point, b: Point, rad: float, samples: int = 24) -> list[Point]:
    """Points of matplotlib's ``arc3,rad`` curve from ``a`` to ``b`` (equal axis aspect): a
    quadratic Bézier whose control point is the chord's middle moved by ``rad·(dy, −dx)``."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    c = ((a[0] + b[0]) / 2 + rad * dy, (a[1] + b[1]) / 2 - rad * dx)
    out = []
    for i in range(samples + 1):
        t = i / samples
        u = 1 - t
        out.append((u * u * a[0] + 2 * u * t * c[0] + t * t * b[0],
                    u * u * a[1] + 2 * u * t * c[1] + t * t * b[1]))
    return out


def _distance(p: Point, q: Point) -> float:
    return math.hypot(p[0] - q[0], p[1] - q[1])


def _overlap(p: Point, q: Point) -> bool:
    return abs(p[0] - q[0]) < _LABEL_BOX[0] and abs(p[1] - q[1]) < _LABEL_BOX[1]


def _bend(a: Point, b: Point, others: Sequence[Point], labels: Sequence[Point]) -> float:
    """The least bend of the arrow ``a → b`` that clears the ``others`` nodes and keeps its
    label (the curve's middle) off the ``labels`` already placed; the straightest fallback is
    the bend that clears the nodes by the most."""
    best, best_clearance = _BENDS[0], -math.inf
    for rad in _BENDS:
        points = _curve(a, b, rad)
        clearance = min((_distance(p, o) for p in points for o in others), default=math.inf)
        if clearance > _RADIUS + 0.12 and not any(
                _overlap(points[len(points) // 2], q) for q in labels):
            return rad
        if clearance > best_clearance:
            best, best_clearance = rad, clearance
    return best


def plot_cell(cell: Cell, path: Path, title: str = "") -> Path | None:
    """Draw ``cell``: one arrow per edge labelled with its op, dashed arrows into ``c_{k}``."""
    from matplotlib.patches import Circle, FancyArrowPatch

    if not cell.edges:
        return None
    layout = cell_layout(cell)
    fig = new_figure(8.0, 4.0)  # resized to the drawing below
    ax = fig.subplots()
    circles = {}
    for node, (x, y) in layout.positions.items():
        colour = "#cfe2f3" if node in (0, 1, OUTPUT) else "#fce5cd"
        circles[node] = Circle((x, y), _RADIUS, facecolor=colour, edgecolor="black", zorder=3)
        ax.add_patch(circles[node])
        ax.text(x, y, layout.labels[node], ha="center", va="center", fontsize=9, zorder=4)
    ops = sorted({e.op for e in cell.edges})
    colours = {op: f"C{i % 10}" for i, op in enumerate(ops)}
    placed: list[Point] = []
    drawn: list[Point] = list(layout.positions.values())
    for edge in cell.edges:
        a, b = layout.positions[edge.source], layout.positions[edge.target]
        others = [p for n, p in layout.positions.items() if n not in (edge.source, edge.target)]
        rad = _bend(a, b, others, placed)
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12,
                                     connectionstyle=f"arc3,rad={rad}", color=colours[edge.op],
                                     patchA=circles[edge.source], patchB=circles[edge.target],
                                     linewidth=1.2, zorder=2))
        points = _curve(a, b, rad)
        drawn += points
        mx, my = points[len(points) // 2]
        placed.append((mx, my))
        ax.text(mx, my, edge.op, ha="center", va="center", fontsize=7, color=colours[edge.op],
                zorder=5, bbox={"boxstyle": "round,pad=0.15", "facecolor": "white",
                                "edgecolor": "none", "alpha": 0.85})
    out = layout.positions[OUTPUT]
    for node in cell.concat:
        if node in layout.positions:
            a = layout.positions[node]
            others = [p for n, p in layout.positions.items() if n not in (node, OUTPUT)]
            rad = _bend(a, out, others, [])
            drawn += _curve(a, out, rad)
            ax.add_patch(FancyArrowPatch(a, out, arrowstyle="-|>", mutation_scale=10,
                                         connectionstyle=f"arc3,rad={rad}",
                                         color="grey", linestyle="--", patchA=circles[node],
                                         patchB=circles[OUTPUT], zorder=1))
    x0, x1 = min(x for x, _ in drawn) - 0.8, max(x for x, _ in drawn) + 0.8
    y0, y1 = min(y for _, y in drawn) - 0.6, max(y for _, y in drawn) + 0.6
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    # about one inch per unit keeps the 7-point labels their assumed size (_LABEL_BOX)
    fig.set_size_inches(max(4.0, 0.95 * (x1 - x0)), 0.95 * (y1 - y0) + 0.6)
    ax.set_aspect("equal")  # _curve assumes it
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
