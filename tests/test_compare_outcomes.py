"""``compare`` marks the runs its numbers leave out: FAILED, KILLED, still RUNNING, and FINISHED
runs whose test accuracy or loss is not finite (a diverged training)."""

from __future__ import annotations

import json

from automl_bin.compare import RunRecord, build_rows, format_table

TAGS = {"strategy": "darts", "binarizer": "xnor", "device": "cpu"}


def _run(status: str, seed: int, **metrics: float) -> RunRecord:
    return RunRecord(name=f"r{seed}", status=status, tags={**TAGS, "suite.seed": str(seed)},
                     metrics=metrics, run_id=f"id{seed}")


def test_left_out_runs_are_counted_by_what_became_of_them() -> None:
    records = [_run("FINISHED", 1, test_acc=0.8, test_loss=0.5),
               _run("FINISHED", 2, test_acc=0.6, test_loss=0.7),
               _run("FAILED", 3),
               _run("KILLED", 4, test_acc=0.1),
               _run("RUNNING", 5),
               _run("FINISHED", 6, test_acc=0.25, test_loss=float("nan"))]
    (row,) = build_rows(records)
    assert (row.runs, row.failed, row.killed, row.running, row.diverged) == (2, 1, 1, 1, 1)
    # only the two sound runs are averaged: not the killed one, not the diverged one
    assert row.acc_mean == 0.7 and row.acc_best == 0.8
    assert len(row.genotypes) == 2 and len(row.run_ids) == 6
    table = format_table([row])
    assert "| 2 (+1 failed, +1 killed, +1 diverged, +1 running) |" in table
    assert "70.00 ± 10.00" in table
    data = json.loads(format_table([row], "json"))[0]
    assert (data["failed"], data["killed"], data["diverged"], data["running"]) == (1, 1, 1, 1)
    header, values = format_table([row], "csv").splitlines()
    csv_row = dict(zip(header.split(","), values.split(","), strict=True))
    assert (csv_row["runs"], csv_row["failed"], csv_row["killed"], csv_row["diverged"],
            csv_row["running"]) == ("2", "1", "1", "1", "1")


def test_a_row_with_no_finished_run_shows_its_status_not_numbers() -> None:
    rows = build_rows([
        RunRecord(name="ok", status="FINISHED", tags={**TAGS, "strategy": "random"},
                  metrics={"test_acc": 0.5, "test_loss": 1.0}),
        RunRecord(name="nan", status="FAILED", tags=TAGS, metrics={"test_loss": float("nan")}),
        RunRecord(name="inf", status="FINISHED", tags=TAGS,
                  metrics={"test_acc": 0.25, "test_loss": float("inf")}),
    ])
    table = format_table(rows)
    failed_line = next(line for line in table.splitlines() if line.startswith("| darts |"))
    cells = [c.strip() for c in failed_line.strip("|").split("|")]
    assert cells[5] == "FAILED, DIVERGED"  # where the accuracy would be
    assert cells[7] == "0 (+1 failed, +1 diverged)"
    ok_line = next(line for line in table.splitlines() if line.startswith("| random |"))
    assert "| 50.00 |" in ok_line and "+" not in ok_line.split("|")[8]


def test_a_row_of_sound_runs_is_unmarked() -> None:
    (row,) = build_rows([_run("FINISHED", 1, test_acc=0.9, test_loss=0.3)])
    assert row.not_finished == {}
    assert "| 90.00 | 90.00 | 1 |" in format_table([row])
