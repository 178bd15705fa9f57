#!/usr/bin/env python3
"""Screenshot of the MLflow runs table of a tiny suite, made the way tests/test_ui_browser.py tests it.

Not a test. Runs one tiny recipe per strategy (synthetic data, seconds each) into one experiment
of a throw-away sqlite store, serves it with ``python -m automl_bin ui --experiment``, opens the
runs-table URL the command prints in headless Chromium (Playwright driving Debian's chromium),
adds the columns that docs/comparing.md recommends, ticks the parent runs so that MLflow's
Compare button shows, and saves a PNG:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/screenshot-ui.py            # docs/img/mlflow-runs.png
    OMP_NUM_THREADS=1 .venv/bin/python scripts/screenshot-ui.py --out /tmp/runs.png --strategies darts random

Needs ``pip install -e '.[ui-test]'`` and ``make browser`` (never ``playwright install``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

import test_ui_browser as ui  # noqa: E402  (the helpers the browser test uses)

#: columns recommended in docs/comparing.md, by the title the Columns menu shows them under
COLUMNS = ["strategy", "binarizer", "strategy.epochs", "test_acc", "search_seconds",
           "model_bits", "speedup_estimate"]
#: default attribute columns hidden to make room for those
HIDDEN = ["Dataset", "Source", "Models"]


def toggle_column(page: Any, title: str) -> None:
    """Tick or untick the column ``title`` in the open Columns menu."""
    search = page.get_by_placeholder("Search columns")
    search.fill(title)
    # the menu bolds the matched part (<strong>strategy</strong>.epochs): match the whole title
    whole = re.compile(rf"^\s*{re.escape(title)}\s*$")
    tree = page.get_by_test_id("column-selector-tree")
    tree.locator(".du-bois-light-tree-title").filter(has_text=whole).first.click()
    search.fill("")


def widen_column(page: Any, header: str, pixels: int) -> None:
    """Drag the right edge of the table's column ``header`` by ``pixels``."""
    box = page.get_by_role("columnheader", name=header).first.bounding_box()
    if box is None:
        return
    x, y = box["x"] + box["width"] - 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + pixels, y, steps=5)
    page.mouse.up()


def arrange(page: Any, run_names: list[str]) -> None:
    """Close the assistant panel, choose the columns, tick the parent runs."""
    for button in ("Close", "Toggle sidebar"):  # the assistant panel, the sidebar
        found = page.get_by_role("button", name=button, exact=True)
        if found.count():
            found.first.click()
    page.get_by_test_id("column-selection-dropdown").first.click()
    for title in HIDDEN + COLUMNS:
        toggle_column(page, title)
    page.keyboard.press("Escape")
    for name in run_names:
        row = page.get_by_role("row").filter(has=page.get_by_text(name, exact=True))
        row.get_by_role("checkbox").first.check()
    page.get_by_role("button", name="Compare").first.wait_for(state="visible")
    widen_column(page, "Run Name", 130)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.mouse.move(0, 0)
    time.sleep(1.0)  # let the table settle after the last re-render


def parent_run_names(store: Path, experiment: str) -> list[str]:
    """The parent runs' names in ``experiment`` of ``<store>/mlflow.db``, newest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{(store / 'mlflow.db').as_posix()}")
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"{store / 'mlflow.db'} has no experiment {experiment!r}")
    runs = client.search_runs([found.experiment_id], "tags.`mlflow.parentRunId` IS NULL")
    return [run.info.run_name for run in runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "mlflow-runs.png")
    parser.add_argument("--strategies", nargs="+", default=["darts", "pc_darts", "random"])
    parser.add_argument("--experiment", default="suite-demo")
    parser.add_argument("--size", default="1460x400", help="viewport WIDTHxHEIGHT")
    parser.add_argument("--store", type=Path, default=None,
                        help="keep the store in this folder and reuse it when it has a mlflow.db "
                             "(default: a temporary folder)")
    args = parser.parse_args(argv)
    missing = ui.browser_missing()
    if missing:
        parser.error(missing)
    width, height = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="automl-bin-ui-shot-") as tmp:
        store = (args.store or Path(tmp)).resolve()
        if (store / "mlflow.db").is_file():
            names = parent_run_names(store, args.experiment)
        else:
            runs = ui.build_store(store, args.strategies, experiment=args.experiment)
            names = [run.parent.info.run_name for run in runs]
        uri = f"sqlite:///{(store / 'mlflow.db').as_posix()}"
        with ui.serve_ui(uri, experiment=args.experiment, cwd=store) as (url, _), \
                ui.chromium_page(width, max(height, 720)) as page:
            print(f"opening {url}", file=sys.stderr)
            ui.open_runs_table(page, url, names)
            arrange(page, names)  # on a tall page: the Columns menu must fit
            page.set_viewport_size({"width": width, "height": height})
            time.sleep(1.0)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
