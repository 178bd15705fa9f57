"""The comparison table of search strategies (the book's Table 4.3).

Input is one `RunRecord` per tracked run (from MLflow for ``automl-bin compare``, or straight
from a suite that just ran); runs of the same row (label, binarizer, ablation switches and
swept values) are aggregated over seeds: test accuracy as mean ± std and best-of-N, the
weight-training budget (``weight_images``: images seen by the searched network's weight steps),
search cost as the mean seconds with the device, ``model_bits`` and ``speedup_estimate``.

Runs tagged ``reference = random_genotypes`` (a suite's ``[reference]``: random genotypes of the
same space, retrained the same way) form one reference row, and every other row gets its
seed-paired difference to them (`paired_delta`, with a 95 % bootstrap interval) and its
percentile among them (`percentile_among`). Its plots are in `automl_bin.plots.compare`.
Nothing here imports torch or MLflow.
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
from typing import Any

import attrs

from automl_bin.tracking.names import WEIGHT_IMAGES

__all__ = ["RunRecord", "Row", "PairedDelta", "build_rows", "format_table", "genotype_id",
           "paired_delta", "percentile_among", "safe_filename", "FORMATS", "REFERENCE_ROW"]

FORMATS = ("markdown", "csv", "json")
#: the metric a row is ranked and plotted by
ACCURACY = "test_acc"
#: the reference kind whose runs every row is measured against
REFERENCE_KIND = "random_genotypes"
#: the label of the row that gathers every reference run (their own labels are 1..N)
REFERENCE_ROW = "random genotypes (reference)"
#: bootstrap resamples and the fixed RNG seed: the same runs give the same interval every time
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 0


@attrs.frozen(kw_only=True)
class RunRecord:
    """One tracked run as the table needs it."""

    name: str
    status: str
    tags: Mapping[str, str] = attrs.field(factory=dict)
    metrics: Mapping[str, float] = attrs.field(factory=dict)
    run_id: str = ""
    #: recipe params as tracked (``experiment.seed``, ...), for runs made outside a suite
    params: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def label(self) -> str:
        return self.tags.get("suite.label") or self.tags.get("strategy", "?")

    @property
    def seed(self) -> str | None:
        """The run's seed (``suite.seed`` tag, else the ``experiment.seed`` param): rows are
        paired with the reference seed by seed."""
        return self.tags.get("suite.seed") or self.params.get("experiment.seed") or None

    @property
    def reference(self) -> str:
        """The reference kind of the run (``random_genotypes``), "" for a searched run."""
        return self.tags.get("reference", "")

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
    #: runs that finished with finite results (the ones the numbers are over)
    runs: int
    #: runs that ended FAILED (a raising plugin, a stopped tracking store, non-finite values)
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
    #: mean images seen by weight steps during the search (None: no run logged it)
    weight_images: float | None = None
    #: the reference kind when this is the reference row, else ""
    reference: str = ""
    #: seed-paired test-accuracy difference to the random genotypes, with its 95 % interval
    delta: float | None = None
    delta_low: float | None = None
    delta_high: float | None = None
    #: how many seeds the difference pairs
    delta_seeds: int = 0
    #: the mean accuracy's percentile (0-100) among every random-genotype run's accuracy
    percentile: float | None = None
    #: runs that ended KILLED (Ctrl-C, SIGTERM, a process found dead)
    killed: int = 0
    #: runs still RUNNING (or SCHEDULED): in progress, or died without a word
    running: int = 0
    #: runs that ended FINISHED with a non-finite test accuracy or loss (a diverged training
    #: recorded before automl-bin stopped such runs)
    diverged: int = 0

    @property
    def not_finished(self) -> dict[str, int]:
        """The counts of the row's runs that the numbers leave out, by what became of them."""
        counts = {"failed": self.failed, "killed": self.killed, "diverged": self.diverged,
                  "running": self.running}
        return {k: n for k, n in counts.items() if n}

    def as_dict(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["sweep"] = dict(self.sweep)
        return out


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _values(records: Sequence[RunRecord], key: str) -> list[float]:
    return [float(r.metrics[key]) for r in records
            if key in r.metrics and math.isfinite(float(r.metrics[key]))]


#: summary metrics that must be finite for a finished run to count
_MUST_BE_FINITE = (ACCURACY, "test_loss")


def _diverged(record: RunRecord) -> bool:
    return any(not math.isfinite(float(record.metrics[key])) for key in _MUST_BE_FINITE
               if key in record.metrics)


def _finished(record: RunRecord) -> bool:
    """A run the table's numbers may use: FINISHED, with finite results."""
    return record.status == "FINISHED" and not _diverged(record)


def _outcomes(members: Sequence[RunRecord]) -> dict[str, int]:
    """How many of ``members`` ended FAILED, KILLED, diverged or are still running."""
    return {"failed": sum(r.status == "FAILED" for r in members),
            "killed": sum(r.status == "KILLED" for r in members),
            "diverged": sum(r.status == "FINISHED" and _diverged(r) for r in members),
            "running": sum(r.status not in ("FINISHED", "FAILED", "KILLED") for r in members)}


def _row_key(record: RunRecord) -> tuple[Any, ...]:
    """What puts two runs in the same row; every reference run of a kind shares one row."""
    t = record.tags
    label = REFERENCE_ROW if record.reference == REFERENCE_KIND else record.label
    return (label, t.get("binarizer", "?"), _switch(t, "tangent", ("true",)),
            _switch(t, "hessian", ("ggn",)), _switch(t, "decoupled", ("true",)), record.sweep)


def build_rows(records: Iterable[RunRecord]) -> list[Row]:
    """Group runs into rows (first appearance order) and aggregate each over its seeds; with
    random-genotype reference runs, every other row gets its difference to them."""
    groups: dict[tuple[Any, ...], list[RunRecord]] = {}
    for record in records:
        groups.setdefault(_row_key(record), []).append(record)
    rows = []
    for (label, binarizer, tp, ggn, do, sweep), members in groups.items():
        done = [r for r in members if _finished(r)]
        accs = _values(done, ACCURACY)
        devices = sorted({r.tags.get("device", "?") for r in done}) or ["–"]
        rows.append(Row(
            label=label, strategy=members[0].tags.get("strategy", "?"), tp=tp, ggn=ggn, do=do,
            binarizer=binarizer, sweep=sweep, runs=len(done), **_outcomes(members),
            acc_mean=_mean(accs),
            # one run has no spread: None, not a misleading 0.00
            acc_std=statistics.pstdev(accs) if len(accs) > 1 else None,
            acc_best=max(accs) if accs else None,
            search_seconds=_mean(_values(done, "search_seconds")), device=", ".join(devices),
            model_bits=_mean(_values(done, "model_bits")),
            speedup=_mean(_values(done, "speedup_estimate")),
            run_ids=tuple(r.run_id for r in members if r.run_id),
            genotypes=tuple(r.genotype for r in done),
            weight_images=_mean(_values(done, WEIGHT_IMAGES)),
            reference=members[0].reference if label == REFERENCE_ROW else ""))
    return _with_reference(rows, groups)


def _by_seed(records: Iterable[RunRecord]) -> dict[str, list[float]]:
    """Finished runs' test accuracies per seed (runs without a seed cannot be paired)."""
    out: dict[str, list[float]] = {}
    for r in records:
        if _finished(r) and r.seed is not None:
            out.setdefault(r.seed, []).extend(_values([r], ACCURACY))
    return {seed: accs for seed, accs in out.items() if accs}


def _with_reference(rows: list[Row], groups: Mapping[tuple[Any, ...], list[RunRecord]]
                    ) -> list[Row]:
    """Each non-reference row with its paired difference and percentile vs the reference."""
    references = [r for key, members in groups.items() if key[0] == REFERENCE_ROW
                  for r in members]
    ref_by_seed = _by_seed(references)
    population = _values([r for r in references if _finished(r)], ACCURACY)
    if not population:
        return rows
    out = []
    for row, members in zip(rows, groups.values()):
        if row.reference:
            out.append(row)
            continue
        own = {seed: statistics.fmean(accs) for seed, accs in _by_seed(members).items()}
        paired = paired_delta(own, ref_by_seed)
        pct = percentile_among(row.acc_mean, population) if row.acc_mean is not None else None
        if paired is None:
            out.append(attrs.evolve(row, percentile=pct))
            continue
        out.append(attrs.evolve(row, delta=paired.delta, delta_low=paired.low,
                                delta_high=paired.high, delta_seeds=paired.seeds,
                                percentile=pct))
    return out


@attrs.frozen(kw_only=True)
class PairedDelta:
    """A row's mean seed-paired accuracy difference to the reference and its 95 % interval."""

    delta: float
    #: the bootstrap interval; None when one seed with one reference run leaves nothing to
    #: resample
    low: float | None
    high: float | None
    seeds: int


def paired_delta(row_by_seed: Mapping[str, float], ref_by_seed: Mapping[str, Sequence[float]],
                 *, resamples: int = BOOTSTRAP_RESAMPLES, rng_seed: int = BOOTSTRAP_SEED
                 ) -> PairedDelta | None:
    """Mean over the shared seeds of (row's accuracy − mean reference accuracy on that seed).

    The 95 % interval is a two-level percentile bootstrap: resample the seeds with replacement
    and, within every drawn seed, that seed's reference runs with replacement (both are noise:
    which seeds ran, and which random genotypes were drawn). The RNG seed is fixed, so the same
    runs always give the same interval. None when no seed has both.
    """
    import numpy as np

    seeds = sorted(s for s in row_by_seed if ref_by_seed.get(s))
    if not seeds:
        return None
    own = np.array([row_by_seed[s] for s in seeds], dtype=float)
    refs = [np.asarray(ref_by_seed[s], dtype=float) for s in seeds]
    delta = float(np.mean(own - np.array([r.mean() for r in refs])))
    if len(seeds) == 1 and len(refs[0]) == 1:
        return PairedDelta(delta=delta, low=None, high=None, seeds=1)
    rng = np.random.default_rng(rng_seed)
    k = len(seeds)
    pick = rng.integers(0, k, size=(resamples, k))
    ref_means = np.zeros((resamples, k))
    for j, r in enumerate(refs):
        # a fresh resample of seed j's references in every slot that drew seed j
        means = r[rng.integers(0, len(r), size=(resamples, k, len(r)))].mean(axis=2)
        ref_means = np.where(pick == j, means, ref_means)
    deltas = (own[pick] - ref_means).mean(axis=1)
    low, high = np.percentile(deltas, [2.5, 97.5])
    return PairedDelta(delta=delta, low=float(low), high=float(high), seeds=k)


def percentile_among(value: float, population: Sequence[float]) -> float:
    """Percent of ``population`` below ``value``, ties counted half (0-100; 50 = median)."""
    below = sum(p < value for p in population)
    ties = sum(p == value for p in population)
    return 100.0 * (below + 0.5 * ties) / len(population)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _accuracy(row: Row) -> str:
    if row.runs == 0 and row.not_finished:  # no number to show: say why, in capitals
        return ", ".join(k.upper() for k in row.not_finished)
    if row.acc_mean is None:
        return "–"
    if row.acc_std is None:  # one run: no spread to show
        return _pct(row.acc_mean)
    return f"{_pct(row.acc_mean)} ± {_pct(row.acc_std)}"


def _delta(row: Row) -> str:
    """``+1.20 [-0.40, +2.70]`` in accuracy points; – when the row has no paired seed."""
    if row.delta is None:
        return "–"
    text = _points(row.delta)
    if row.delta_low is not None and row.delta_high is not None:
        text += f" [{_points(row.delta_low)}, {_points(row.delta_high)}]"
    return text


def _points(value: float) -> str:
    """A signed difference in accuracy points; float noise around 0 prints +0.00, not -0.00."""
    return f"{round(100 * value, 2) + 0.0:+.2f}"


_CSV_SWITCH = {"✓": "true", "✗": "false", "–": ""}
_HEAD = ["strategy", "T.P.", "GGN", "D.O.", "binarizer", "test acc % (mean ± std)",
         "best of N", "N"]
_REFERENCE_HEAD = ["Δ vs random (95% CI)", "pct"]
_TAIL = ["weight images", "search s", "device", "model_bits", "speedup", "genotypes"]


def _cells(row: Row, sweep_keys: Sequence[str], with_reference: bool) -> list[str]:
    left_out = ", ".join(f"+{n} {what}" for what, n in row.not_finished.items())
    n = f"{row.runs}" + (f" ({left_out})" if left_out else "")
    swept = dict(row.sweep)
    head = [row.label, row.tp, row.ggn, row.do, row.binarizer, _accuracy(row),
            _pct(row.acc_best), n]
    reference = [_delta(row), _num(row.percentile, ".0f")] if with_reference else []
    tail = [_num(row.weight_images, ",.0f"), _num(row.search_seconds, ".1f"), row.device,
            _num(row.model_bits, ".0f"),
            _num(row.speedup, ".2f") + ("x" if row.speedup is not None else ""),
            " ".join(row.genotypes) or "–"]
    return [*head, *reference, *tail, *[swept.get(k, "–") for k in sweep_keys]]


def _sweep_keys(rows: Sequence[Row]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k, _ in row.sweep if k not in keys)
    return keys


def _csv(rows: Sequence[Row], keys: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["strategy", "tp", "ggn", "do", "binarizer", "test_acc_mean",
                     "test_acc_std", "test_acc_best", "runs", "failed", "killed", "diverged",
                     "running", "delta_vs_random",
                     "delta_low", "delta_high", "delta_seeds", "percentile_vs_random",
                     "reference", "weight_images", "search_seconds", "device", "model_bits",
                     "speedup_estimate", "genotypes", *keys])
    for r in rows:
        swept = dict(r.sweep)
        writer.writerow([r.label, *(_CSV_SWITCH[x] for x in (r.tp, r.ggn, r.do)), r.binarizer,
                         r.acc_mean, r.acc_std, r.acc_best, r.runs, r.failed, r.killed,
                         r.diverged, r.running, r.delta,
                         r.delta_low, r.delta_high, r.delta_seeds or "", r.percentile,
                         r.reference, r.weight_images, r.search_seconds, r.device,
                         r.model_bits, r.speedup, " ".join(r.genotypes),
                         *[swept.get(k, "") for k in keys]])
    return buffer.getvalue()


def format_table(rows: Sequence[Row], fmt: str = "markdown") -> str:
    """The table as ``markdown``, ``csv`` or ``json``; the markdown table has the ``Δ vs
    random`` and ``pct`` columns only when a reference row is among ``rows``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps([r.as_dict() for r in rows], indent=2, ensure_ascii=False)
    keys = _sweep_keys(rows)
    if fmt == "csv":
        return _csv(rows, keys)
    with_reference = any(r.reference for r in rows)
    header = [*_HEAD, *(_REFERENCE_HEAD if with_reference else []), *_TAIL, *keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(r, keys, with_reference)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def safe_filename(text: str) -> str:
    """``strategy.beta_p`` -> ``strategy.beta_p``; anything odd becomes ``_``."""
    return re.sub(r"[^\w.\-]", "_", text)
