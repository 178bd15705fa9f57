"""Collapse diagnostics of a genotype, logged by the runner after every search epoch.

DARTS-family searches tend to *collapse*: as the supernet trains, the parameter-free ops
(skip connections above all, also pooling) win the edges, because they let gradients through
without having to learn anything, and the derived cell loses its convolutions. The counts here,
taken on the genotype the search would pick after each epoch, show that drift as it happens.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from automl_bin.interfaces.genotype import Genotype

if TYPE_CHECKING:
    from automl_bin.interfaces.search_space import SearchSpace
    from automl_bin.interfaces.strategy import Strategy

__all__ = ["genotype_diagnostics", "metric_name_part", "search_diagnostics"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def metric_name_part(name: str) -> str:
    """``name`` as one dot-free part of an MLflow metric key (other characters become ``_``)."""
    return _UNSAFE.sub("_", name) or "_"


def genotype_diagnostics(genotype: Genotype, parameter_free_ops: Iterable[str],
                         op_names: Iterable[str] = ()) -> dict[str, float]:
    """Per cell type of ``genotype``, how many of its edges are skip or parameter-free ops.

    Returns ``arch.<cell>.skip_connect`` (ops whose name contains ``skip``),
    ``arch.<cell>.param_free`` (ops in ``parameter_free_ops``) and the op histogram
    ``arch.<cell>.op.<op>``: every op of ``op_names`` (0 when absent, so each op's curve is
    continuous over the epochs), then any other op the cell uses.
    """
    free = frozenset(parameter_free_ops)
    listed = tuple(op_names)
    out: dict[str, float] = {}
    for cell_name, cell in genotype.cells:
        prefix = f"arch.{metric_name_part(cell_name)}"
        ops = cell.ops()
        out[f"{prefix}.skip_connect"] = float(sum("skip" in op for op in ops))
        out[f"{prefix}.param_free"] = float(sum(op in free for op in ops))
        counts = Counter(ops)
        for op in (*listed, *sorted(set(counts) - set(listed))):
            key = f"{prefix}.op.{metric_name_part(op)}"
            # two names may sanitise to one key: add, so the histogram still sums to the edges
            out[key] = out.get(key, 0.0) + float(counts.get(op, 0))
    return out


def search_diagnostics(strategy: Strategy, space: SearchSpace) -> dict[str, float]:
    """`genotype_diagnostics` of the genotype ``strategy`` would derive now; ``{}`` when it
    cannot derive yet (e.g. a random search before its first sample)."""
    try:
        genotype = strategy.derive()
    except Exception:  # noqa: BLE001 - a diagnostic must never stop a search
        return {}
    return genotype_diagnostics(genotype, space.parameter_free_ops, space.op_names)
