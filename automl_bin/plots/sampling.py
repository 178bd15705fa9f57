"""The operation-space reduction of a sampling search (BNAS, CP-NAS) over its pruning rounds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from automl_bin.plots.figure import new_figure, save_figure

if TYPE_CHECKING:
    from automl_bin.search.pruning import OperationPruner

__all__ = ["plot_remaining_ops"]


def _reduction(pruner: OperationPruner) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Round by round: the mean remaining ops per edge of each cell type, and for each op the
    number of edges (all cell types) still holding it."""
    k0 = pruner.initial_k
    starts = {kind: [k0] * len(cands) for kind, cands in pruner.candidates.items()}
    start_ops = {name: 0 for name in pruner.op_names}
    # the ops every edge started with: the survivors plus everything removed from it
    for kind, cands in pruner.candidates.items():
        for edge, ops in enumerate(cands):
            names = [pruner.op_names[m] for m in ops]
            names += [h["removed"][kind][edge] for h in pruner.history]
            for name in names:
                start_ops[name] += 1
    holding = {name: [count] for name, count in start_ops.items()}
    per_kind = {kind: [sum(c) / len(c)] for kind, c in starts.items()}
    for h in pruner.history:
        for name in holding:
            holding[name].append(holding[name][-1])
        for kind, removed in h["removed"].items():
            for name in removed:
                holding[name][-1] -= 1
            per_kind[kind].append(per_kind[kind][-1] - 1)
    return per_kind, holding


def plot_remaining_ops(pruner: OperationPruner, path: Path,
                       title: str = "operation-space reduction") -> Path:
    """Two panels over the rounds: mean remaining ops per edge (per cell type), and for each op
    the number of edges (all cell types) still holding it."""
    per_kind, holding = _reduction(pruner)
    rounds = list(range(pruner.round + 1))
    fig = new_figure(10, 4)
    left, right = fig.subplots(1, 2)
    for kind, values in per_kind.items():
        left.plot(rounds, values, marker="o", label=kind)
    left.set_xlabel("reduction round")
    left.set_ylabel("remaining ops per edge")
    left.set_xticks(rounds)
    left.legend()
    for name, values in holding.items():
        if values[0]:
            right.plot(rounds, values, marker=".", label=name)
    right.set_xlabel("reduction round")
    right.set_ylabel("edges still holding the op")
    right.set_xticks(rounds)
    right.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
