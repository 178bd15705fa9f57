"""The comparison table of search strategies (the book's Table 4.3) and its plots.

Input is one `RunRecord` per tracked run (from MLflow for ``automl-bin compare``, or straight
from a suite that just ran); runs of the same row (label, binarizer, ablation switches and
swept values) are aggregated over seeds: test accuracy as mean ± std and best-of-N, search
cost as the mean seconds with the device, ``model_bits`` and ``speedup_estimate``. Nothing
here imports torch or MLflow.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = ["RunRecord", "Row", "build_rows", "format_table", "plot_accuracy_vs_cost",
           "plot_sweep", "genotype_id", "FORMATS"]

FORMATS = ("markdown", "csv", "json")
#: the metric a row is ranked and plotted by
ACCURACY = "test_acc"


@attrs.frozen(kw_only=True)
class RunRecord:
    """One tracked run as the table needs it."""

    name: str
    status: str
    tags: Mapping[str, str] = attrs.field(factory=dict)
    metrics: Mapping[str, float] = attrs.field(factory=dict)
    run_id: str = ""

    @property
    def label(self) -> str:
        return self.tags.get("suite.label") or self.tags.get("strategy", "?")

    @property
    def genotype(self) -> str:
        """Short id of the architecture the run found (``–`` when it has none).

        ``genotype_id`` (the id of the whole text) wins over hashing the ``genotype`` tag, which
        MLflow stores cut to 5,000 characters."""
        if self.tags.get("genotype_id"):
            return self.tags["genotype_id"]
        text = self.tags.get("genotype")
        return genotype_id(text) if text else "–"

    @property
    def sweep(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((k[len("sweep."):], v) for k, v in self.tags.items()
                            if k.startswith("sweep.")))


def genotype_id(text: str) -> str:
    """The first 6 hex digits of the SHA-256 of a genotype's text: rows whose runs show the same
    id found the same architecture, so their accuracy differences are retraining noise."""
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def _switch(tags: Mapping[str, str], key: str, on: Iterable[str]) -> str:
    """✓/✗ for a DCP-NAS ablation switch, – for strategies without it."""
    if key not in tags:
        return "–"
    return "✓" if tags[key].lower() in set(on) else "✗"


@attrs.frozen(kw_only=True)
class Row:
    """One line of the table: runs that differ only by seed."""

    label: str
    strategy: str
    tp: str
    ggn: str
    do: str
    binarizer: str
    sweep: tuple[tuple[str, str], ...]
    runs: int
    failed: int
    acc_mean: float | None
    acc_std: float | None
    acc_best: float | None
    search_seconds: float | None
    device: str
    model_bits: float | None
    speedup: float | None
    #: the MLflow ids of the row's runs (for `automl-bin run --from-run`)
    run_ids: tuple[str, ...] = ()
    #: `genotype_id` of each finished run, in run order (seed by seed in a suite)
    genotypes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["sweep"] = dict(self.sweep)
        return out


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _values(records: Sequence[RunRecord], key: str) -> list[float]:
    return [float(r.metrics[key]) for r in records
            if key in r.metrics and math.isfinite(float(r.metrics[key]))]


def build_rows(records: Iterable[RunRecord]) -> list[Row]:
    """Group runs into rows (first appearance order) and aggregate each over its seeds."""
    groups: dict[tuple[Any, ...], list[RunRecord]] = {}
    for record in records:
        t = record.tags
        key = (record.label, t.get("binarizer", "?"), _switch(t, "tangent", ("true",)),
               _switch(t, "hessian", ("ggn",)), _switch(t, "decoupled", ("true",)),
               record.sweep)
        groups.setdefault(key, []).append(record)
    rows = []
    for (label, binarizer, tp, ggn, do, sweep), members in groups.items():
        done = [r for r in members if r.status == "FINISHED"]
        accs = _values(done, ACCURACY)
        devices = sorted({r.tags.get("device", "?") for r in done}) or ["–"]
        rows.append(Row(
            label=label, strategy=members[0].tags.get("strategy", "?"), tp=tp, ggn=ggn, do=do,
            binarizer=binarizer, sweep=sweep, runs=len(done), failed=len(members) - len(done),
            acc_mean=_mean(accs), acc_std=statistics.pstdev(accs) if len(accs) > 1 else (
                0.0 if accs else None),
            acc_best=max(accs) if accs else None,
            search_seconds=_mean(_values(done, "search_seconds")), device=", ".join(devices),
            model_bits=_mean(_values(done, "model_bits")),
            speedup=_mean(_values(done, "speedup_estimate")),
            run_ids=tuple(r.run_id for r in members if r.run_id),
            genotypes=tuple(r.genotype for r in done)))
    return rows


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


_CSV_SWITCH = {"✓": "true", "✗": "false", "–": ""}
_HEADER = ["strategy", "T.P.", "GGN", "D.O.", "binarizer", "test acc % (mean ± std)",
           "best of N", "N", "search s", "device", "model_bits", "speedup", "genotypes"]


def _cells(row: Row, sweep_keys: Sequence[str]) -> list[str]:
    acc = "–" if row.acc_mean is None else f"{_pct(row.acc_mean)} ± {_pct(row.acc_std)}"
    n = f"{row.runs}" + (f" (+{row.failed} failed or killed)" if row.failed else "")
    swept = dict(row.sweep)
    return [row.label, row.tp, row.ggn, row.do, row.binarizer, acc, _pct(row.acc_best), n,
            _num(row.search_seconds, ".1f"), row.device, _num(row.model_bits, ".0f"),
            _num(row.speedup, ".2f") + ("x" if row.speedup is not None else ""),
            " ".join(row.genotypes) or "–", *[swept.get(k, "–") for k in sweep_keys]]


def _sweep_keys(rows: Sequence[Row]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k, _ in row.sweep if k not in keys)
    return keys


def format_table(rows: Sequence[Row], fmt: str = "markdown") -> str:
    """The table as ``markdown``, ``csv`` or ``json``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps([r.as_dict() for r in rows], indent=2, ensure_ascii=False)
    keys = _sweep_keys(rows)
    header = _HEADER + keys
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["strategy", "tp", "ggn", "do", "binarizer", "test_acc_mean",
                         "test_acc_std", "test_acc_best", "runs", "failed", "search_seconds",
                         "device", "model_bits", "speedup_estimate", "genotypes", *keys])
        for r in rows:
            swept = dict(r.sweep)
            writer.writerow([r.label, *(_CSV_SWITCH[x] for x in (r.tp, r.ggn, r.do)), r.binarizer, r.acc_mean, r.acc_std,
                             r.acc_best, r.runs, r.failed, r.search_seconds, r.device,
                             r.model_bits, r.speedup, " ".join(r.genotypes),
                             *[swept.get(k, "") for k in keys]])
        return buffer.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(r, keys)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt: Any, fig: Any, ax: Any, title: str, path: str | Path) -> Path:
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_accuracy_vs_cost(rows: Sequence[Row], path: str | Path) -> Path | None:
    """Test accuracy (mean ± std) against search seconds, one marker per row; None if no row
    has both."""
    points = [r for r in rows if r.acc_mean is not None and r.search_seconds is not None]
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "osD^vP*Xh<>"
    for i, r in enumerate(points):
        name = r.label + "".join(f" {k}={v}" for k, v in r.sweep)
        ax.errorbar(r.search_seconds, 100 * r.acc_mean, yerr=100 * (r.acc_std or 0.0),
                    fmt=markers[i % len(markers)], capsize=3, label=f"{name} (N={r.runs})")
    ax.set_xlabel(f"search cost (seconds, {', '.join(sorted({r.device for r in points}))})")
    return _finish(plt, fig, ax, "accuracy vs search cost", path)


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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
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
    return _finish(plt, fig, ax, f"test accuracy vs {key}", path)


def safe_filename(text: str) -> str:
    """``strategy.beta_p`` -> ``strategy.beta_p``; anything odd becomes ``_``."""
    return re.sub(r"[^\w.\-]", "_", text)
