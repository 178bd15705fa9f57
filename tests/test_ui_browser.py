"""The MLflow UI as a user sees it: `automl-bin ui` on a store of a tiny suite, in headless Chromium.

Two tiny recipes with different strategies run into one experiment of one sqlite store;
``python -m automl_bin ui --experiment`` serves it and prints the experiment's runs-table URL;
Chromium (Debian's ``chromium``, driven by Playwright) opens that URL and every strategy's parent
run (``<strategy>-<run folder>``) must be listed.

Needs ``pip install -e '.[ui-test]'`` (Playwright) and ``make browser`` (Debian's chromium;
never ``playwright install``). Without them the test is skipped, unless
``AUTOML_BIN_REQUIRE_BROWSER=1`` (set by CI) turns the skip into a failure.
``scripts/screenshot-ui.py`` uses the helpers below to make ``docs/img/mlflow-runs.png``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

#: CI sets this: a missing browser or Playwright fails the test instead of skipping it
REQUIRE_ENV = "AUTOML_BIN_REQUIRE_BROWSER"
#: where Debian's chromium package puts the browser (`make browser`), then $PATH;
#: $AUTOML_BIN_CHROMIUM, when set, is the only one tried
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
#: the flags that keep a headless Chromium quiet and offline in a container
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-dev-shm-usage"]
STRATEGIES = ("darts", "random")
EXPERIMENT = "ui-test"
#: seconds for the server to print its URL, and for the page to show a run name
SERVER_TIMEOUT_S = 120.0
PAGE_TIMEOUT_S = 60.0


def find_chromium() -> str | None:
    """The Chromium executable to drive (only $AUTOML_BIN_CHROMIUM when set), or None."""
    chosen = os.environ.get("AUTOML_BIN_CHROMIUM", "").strip()
    for candidate in (chosen,) if chosen else CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def browser_missing() -> str | None:
    """Why the browser test cannot run here (Playwright or Chromium missing), or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[ui-test]')"
    if find_chromium() is None:
        chosen = os.environ.get("AUTOML_BIN_CHROMIUM", "").strip()
        if chosen:
            return f"AUTOML_BIN_CHROMIUM={chosen} is not an executable"
        return ("Chromium is not installed (make browser, i.e. apt-get install chromium; "
                "or set AUTOML_BIN_CHROMIUM)")
    return None


def build_store(tmp_path: Path, strategies: Sequence[str] = STRATEGIES,
                experiment: str = EXPERIMENT) -> list[Any]:
    """Run one tiny recipe per strategy into ``<tmp_path>/mlflow.db``; their `RecipeRun`s."""
    from automl_bin.testing import run_recipe, tiny_recipe_text

    return [run_recipe(tmp_path, tiny_recipe_text(strategy, name=experiment))
            for strategy in strategies]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the command's process group (it and its MLflow server), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
    proc.wait()


@contextlib.contextmanager
def serve_ui(uri: str, *, experiment: str | None = None, cwd: Path | None = None,
             timeout: float = SERVER_TIMEOUT_S) -> Iterator[tuple[str, list[str]]]:
    """Run ``python -m automl_bin ui --uri URI`` on a free port until the block ends.

    Yields the URL the command printed (``MLflow UI: <url>``) and the list of its output lines
    so far (it keeps growing). The process group gets SIGTERM on the way out, whatever happens.
    """
    args = [sys.executable, "-m", "automl_bin", "ui", "--uri", uri, "--port", str(free_port())]
    if experiment is not None:
        args += ["--experiment", experiment]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("MLflow UI: "):
                found.put(line[len("MLflow UI: "):].split()[0])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                url = found.get(timeout=0.25)
                break
            except queue.Empty:
                output = "\n".join(lines)
                if proc.poll() is not None:
                    reader.join(timeout=5)
                    raise AssertionError(f"`automl-bin ui` exited with code {proc.returncode}:\n"
                                         + "\n".join(lines))
                if time.monotonic() > deadline:
                    raise AssertionError(f"`automl-bin ui` printed no URL in {timeout:.0f} s:\n"
                                         + output)
        yield url, lines
    finally:
        _stop_group(proc)
        reader.join(timeout=5)


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 800) -> Iterator[Any]:
    """A page of a headless Chromium with a throw-away profile (the system browser, launched
    through Playwright; never a downloaded one)."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise RuntimeError(browser_missing() or "no Chromium")
    with tempfile.TemporaryDirectory(prefix="automl-bin-chromium-") as profile, \
            sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def open_runs_table(page: Any, url: str, run_names: Sequence[str],
                    timeout: float = PAGE_TIMEOUT_S) -> None:
    """Open the runs table at ``url`` and wait until every name in ``run_names`` is shown.

    Waits for the ``load`` event and then for the names: the UI polls, so ``networkidle``
    never comes.
    """
    page.goto(url, wait_until="load", timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    for name in run_names:
        left = max(deadline - time.monotonic(), 1.0)
        page.get_by_text(name, exact=True).first.wait_for(state="visible", timeout=left * 1000)


@pytest.mark.slow
def test_runs_table_lists_every_strategy(tmp_path: Path) -> None:
    missing = browser_missing()
    if missing is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{missing}; {REQUIRE_ENV}=1 requires the browser test to run")
        pytest.skip(missing)

    runs = build_store(tmp_path)
    names = [run.parent.info.run_name for run in runs]
    assert [name.split("-", 1)[0] for name in names] == list(STRATEGIES)
    experiment_id = runs[0].parent.info.experiment_id
    assert {run.parent.info.experiment_id for run in runs} == {experiment_id}

    # `automl-bin ui` reads the experiments from the store MLflow wrote, before it serves it
    from automl_bin.cli.ui import sqlite_experiments

    assert (experiment_id, EXPERIMENT, True) in (sqlite_experiments(tmp_path / "mlflow.db") or [])

    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    with serve_ui(uri, experiment=EXPERIMENT, cwd=tmp_path) as (url, _):
        assert url.endswith(f"/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
        with chromium_page() as page:
            open_runs_table(page, url, names)
            body = page.inner_text("body")
    for name in names:
        assert name in body, (name, body[:2000])
