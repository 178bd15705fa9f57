"""``automl-bin compare EXPERIMENT``: the Table-4.3-style comparison of tracked runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from automl_bin.compare import (
    FORMATS,
    RunRecord,
    build_rows,
    format_table,
    safe_filename,
)
from automl_bin.errors import UsageError
from automl_bin.tracking.names import (
    PARENT_TAG,
    PHASE_TAG,
    RECIPE_SHA_TAG,
    ROLE_RUN,
    ROLE_SUITE,
    ROLE_TAG,
    WEIGHT_IMAGES,
)
from automl_bin.tracking.store import open_client, uri_option_help
from automl_bin.plots.compare import plot_accuracy_vs_cost, plot_sweep

__all__ = ["compare_command", "records_from_mlflow"]


def _is_run(tags: dict[str, str]) -> bool:
    """A run of `automl-bin run` (not a suite run, not a search/retrain phase run)."""
    role = tags.get(ROLE_TAG)
    if role is not None:
        return role == ROLE_RUN
    return RECIPE_SHA_TAG in tags and PHASE_TAG not in tags  # runs tracked before roles existed


def records_from_mlflow(uri: str | None, experiment: str,
                        suite: str | None = None) -> tuple[list[RunRecord], str]:
    """The runs of ``experiment`` (only those of suite run ``suite``, or of the latest suite
    with ``"latest"``), oldest first, and the store's URI."""
    client, uri = open_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise UsageError(f"There is no experiment {experiment!r} in the MLflow store {uri}. "
                         f"Experiments there: {', '.join(names) or 'none'} (the name is the "
                         "recipe's [experiment] name).")
    runs = client.search_runs([exp.experiment_id], max_results=5000,
                              order_by=["attributes.start_time ASC"])
    if suite == "latest":
        suites = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_SUITE]
        if not suites:
            raise UsageError(f"Experiment {experiment!r} has no suite run; drop --suite to "
                             "compare all its runs.")
        suite = suites[-1].info.run_id
    searched = _search_metrics(runs)
    records = []
    for r in runs:
        tags = dict(r.data.tags)
        if not _is_run(tags) or (suite is not None and tags.get(PARENT_TAG) != suite):
            continue
        metrics = {**searched.get(r.info.run_id, {}), **r.data.metrics}
        records.append(RunRecord(name=r.info.run_name or r.info.run_id, status=r.info.status,
                                 tags=tags, metrics=metrics, run_id=r.info.run_id,
                                 params=dict(r.data.params)))
    if not records:
        where = f" in suite run {suite}" if suite else ""
        raise UsageError(f"Experiment {experiment!r} has no automl-bin runs{where} in {uri}.")
    return records, uri


def _search_metrics(runs: list[Any]) -> dict[str, dict[str, float]]:
    """Parent run id -> ``weight_images`` of its nested ``search`` run: a strategy may log the
    budget only with its search metrics, and the table shows it per run."""
    out: dict[str, dict[str, float]] = {}
    for r in runs:
        tags = r.data.tags
        if tags.get(PHASE_TAG) == "search" and PARENT_TAG in tags \
                and WEIGHT_IMAGES in r.data.metrics:
            out[tags[PARENT_TAG]] = {WEIGHT_IMAGES: r.data.metrics[WEIGHT_IMAGES]}
    return out


@click.command("compare", epilog="""\b
Examples:
  automl-bin compare table43-fmnist
  automl-bin compare table43-fmnist --format csv > table.csv
  automl-bin compare table43-fmnist --suite latest --plot table43.png
  automl-bin compare quickstart --uri sqlite:////data/mlflow.db --format json
""")
@click.argument("experiment")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="markdown",
              show_default=True, help="Table format.")
@click.option("--suite", default=None, metavar="RUN_ID|latest",
              help="Only the runs of this suite run (or of the latest suite).")
@click.option("--plot", "plot", default=None, metavar="PATH",
              help="Where to write the accuracy-vs-search-cost PNG (default: "
                   "compare-EXPERIMENT.png; sweeps add compare-EXPERIMENT-sweep-KEY.png).")
@click.option("--no-plot", is_flag=True, help="Print the table only.")
@click.option("--uri", default=None, metavar="URI", help=uri_option_help)
def compare_command(experiment: str, fmt: str, suite: str | None, plot: str | None,
                    no_plot: bool, uri: str | None) -> None:
    """Print the comparison table of EXPERIMENT's tracked runs (the book's Table 4.3 layout).

    One row per strategy (suite label), binarizer, DCP-NAS ablation switches (T.P. tangent
    propagation, GGN, D.O. decoupled optimisation) and swept values; test accuracy as mean ± std
    over seeds with the best of N beside it, the weight-training budget (images seen by weight
    steps during the search), search cost in seconds with the device, model bits and the
    speedup estimate. Runs that did not finish (FAILED, KILLED, still RUNNING) or finished with
    a non-finite test accuracy or loss (diverged) are counted apart in N, never averaged; a row
    with no finished run shows their status where its accuracy would be.

    With random-genotype reference runs (a suite's [reference] random_genotypes = N) they form
    one row, and every other row shows "Δ vs random": its mean seed-paired accuracy difference
    to them in points with a 95 % bootstrap interval (an interval excluding 0 beats or loses to
    a random architecture at this budget), and "pct": its mean accuracy's percentile among the
    random genotypes' accuracies.
    """
    records, _ = records_from_mlflow(uri, experiment, suite)
    rows = build_rows(records)
    click.echo(format_table(rows, fmt), nl=False)
    if no_plot:
        return
    base = Path(plot) if plot else Path(f"compare-{safe_filename(experiment)}.png")
    written: list[Any] = [plot_accuracy_vs_cost(rows, base)]
    keys = sorted({k for row in rows for k, _ in row.sweep})
    written += [plot_sweep(rows, key, base.with_name(f"{base.stem}-sweep-{safe_filename(key)}.png"))
                for key in keys]
    for path in written:
        if path is not None:
            click.echo(f"Wrote {path}", err=True)
