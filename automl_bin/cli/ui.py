"""``automl-bin ui``: start the MLflow UI on the store ``automl-bin run`` writes to.

The command runs ``python -m mlflow server`` as a child process with settings that suit one
person on one machine (a single worker, no background job runner, no telemetry), prints the URLs
of the experiments' runs tables and waits; Ctrl-C stops the server. mlflow is not imported here:
the server is a subprocess. The experiments of a sqlite store are read from the file before the
server starts (so a wrong ``--experiment`` fails at once); other stores are asked through the
server's REST API once it is up.

MLflow 3 opens an experiment (``#/experiments/<ID>``) on its GenAI overview; the table of runs,
where runs are selected and compared, is ``#/experiments/<ID>/runs?workflowType=machine_learning``
(`runs_url`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

import click

from automl_bin.tracking.names import missing_sqlite_store, resolve_tracking_uri, sqlite_path

__all__ = ["ui_command", "server_command", "server_env", "runs_url", "list_experiments",
           "sqlite_experiments", "is_loopback", "exposure_warning"]

#: ``(experiment ID, name, has active runs)``
Experiment = tuple[str, str, bool]

#: seconds to wait for the server's /health before printing the URL anyway
_READY_TIMEOUT_S = 60.0
#: seconds the server gets to stop after SIGTERM before it is killed
_STOP_TIMEOUT_S = 10.0
_NOT_SET = object()
#: experiments listed by name after the server is up (the rest are on the experiments page)
_MAX_LISTED = 20


def runs_url(base_url: str, experiment_id: str) -> str:
    """The MLflow UI's runs table of experiment ``experiment_id`` on the server ``base_url``.

    The plain ``#/experiments/<ID>`` route opens MLflow 3's GenAI overview instead of the table.
    """
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def server_command(uri: str, host: str, port: int) -> list[str]:
    """The ``mlflow server`` command line for the store ``uri``.

    Runs created by ``MlflowClient`` on a sqlite store keep their artifacts in a local folder
    (``<cwd at creation>/mlruns/<experiment>/<run>/artifacts``, stored as an absolute path per
    experiment), and the server reads such paths directly. ``--default-artifact-root`` only
    decides where experiments created *in the UI* put artifacts: the ``mlruns`` folder next to
    the database, a plain path that ``automl-bin run`` (which talks to sqlite, not to the server)
    can write to. The proxied mode MLflow uses by default would give those experiments an
    ``mlflow-artifacts:/`` root that a sqlite client cannot log to, so it is switched off.
    """
    db = sqlite_path(uri)
    artifact_root = (db.parent if db is not None else Path.cwd().resolve()) / "mlruns"
    return [
        sys.executable, "-m", "mlflow", "server",
        "--host", host,
        "--port", str(port),
        "--backend-store-uri", uri,
        "--default-artifact-root", str(artifact_root),
        "--no-serve-artifacts",
        # one worker and no job runner: starts in ~5 s with ~0.5 GB instead of ~11 s and 2.5 GB
        "--workers", "1",
        # no access-log line per request in the user's terminal; startup errors still show
        "--uvicorn-opts", "--log-level warning",
    ]


def server_env() -> dict[str, str]:
    """The server's environment: ours, without the job runner and telemetry."""
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def _browse_host(host: str) -> str:
    # a wildcard bind address is not something a browser can open; IPv6 literals need brackets
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10.0) as response:
        return json.loads(response.read())


def sqlite_experiments(db: Path) -> list[Experiment] | None:
    """``(id, name, has_runs)`` of the active experiments of the MLflow sqlite store ``db``,
    oldest first, read directly (read-only); None when the file cannot be read that way."""
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = con.execute(
                "SELECT e.experiment_id, e.name, EXISTS (SELECT 1 FROM runs r"
                " WHERE r.experiment_id = e.experiment_id AND r.lifecycle_stage = 'active')"
                " FROM experiments e WHERE e.lifecycle_stage = 'active'"
                " ORDER BY e.creation_time, e.experiment_id"
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return [(str(exp_id), str(name), bool(has_runs)) for exp_id, name, has_runs in rows]


def list_experiments(base_url: str) -> list[Experiment]:
    """``(id, name, has_runs)`` of the active experiments on the MLflow server ``base_url``.

    Uses the public REST API (any backend store); at most 1000 experiments, oldest first.
    """
    api = f"{base_url.rstrip('/')}/api/2.0/mlflow"
    found = _post_json(f"{api}/experiments/search",
                       {"max_results": 1000, "view_type": "ACTIVE_ONLY"})
    experiments = sorted(found.get("experiments", []),
                         key=lambda e: (int(e.get("creation_time") or 0), e["experiment_id"]))
    rows = []
    for exp in experiments:
        runs = _post_json(f"{api}/runs/search",
                          {"experiment_ids": [exp["experiment_id"]], "max_results": 1})
        rows.append((exp["experiment_id"], exp["name"], bool(runs.get("runs"))))
    return rows


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another host name: a real interface


def exposure_warning(host: str, port: int) -> str | None:
    """The warning for serving on ``host`` when other machines can reach it, else None."""
    if is_loopback(host):
        return None
    return (f"Warning: --host {host} exposes this MLflow server to the network with no "
            f"authentication: anyone who can reach port {port} can read, change and delete "
            "every run, artifact and experiment of the store. To look at it from another "
            "machine, keep the default --host 127.0.0.1 and use an SSH tunnel (`ssh -L "
            f"{port}:127.0.0.1:{port} USER@THIS-MACHINE`, then open http://127.0.0.1:{port}), "
            "or put the server behind a reverse proxy that requires a login (e.g. nginx with "
            "auth_basic and TLS).")


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_ready(proc: subprocess.Popen[bytes], health_url: str, timeout: float) -> bool:
    """Poll ``health_url`` until it answers, the server exits, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(health_url, timeout=2.0):
                return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (it stops its own workers), then kill it if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _pick(experiments: list[Experiment], experiment: str, uri: str) -> Experiment:
    """The experiment called ``experiment`` (a name, else an ID); a usage error if none."""
    match = ([e for e in experiments if e[1] == experiment]
             or [e for e in experiments if e[0] == experiment])
    if not match:
        names = ", ".join(repr(e[1]) for e in experiments if e[2]) or "none with runs"
        raise click.UsageError(
            f"--experiment {experiment!r}: no such experiment in {uri} (experiments: {names})."
        )
    return match[0]


def _announce(url: str, uri: str, experiment: str | None,
              experiments: list[Experiment] | None = None) -> None:
    """Print where to point the browser: the runs table(s) of the store's experiments.

    ``experiments`` are the store's (`sqlite_experiments`); None asks the server. With
    ``experiment`` (a name or an ID) only that experiment's runs table, or a usage error when
    the store has no such experiment. Otherwise the runs table of the only experiment with runs,
    or the experiments page and one runs-table URL per experiment with runs.
    """
    if experiments is None:
        try:
            experiments = list_experiments(url)
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            if experiment is not None:
                raise click.ClickException(
                    f"Could not list the experiments of {uri} ({exc}); open {url}/#/experiments."
                ) from None
            click.echo(f"MLflow UI: {url}/#/experiments   (Ctrl-C to stop)")
            return
    if experiment is not None:
        click.echo(f"MLflow UI: {runs_url(url, _pick(experiments, experiment, uri)[0])}"
                   "   (Ctrl-C to stop)")
        return
    with_runs = [e for e in experiments if e[2]]
    if len(with_runs) == 1:
        click.echo(f"MLflow UI: {runs_url(url, with_runs[0][0])}   (Ctrl-C to stop)")
        click.echo(f"All experiments: {url}/#/experiments")
        return
    click.echo(f"MLflow UI: {url}/#/experiments   (Ctrl-C to stop)")
    if not with_runs:
        click.echo("No runs in this store yet: `automl-bin run RECIPE` writes them here.")
        return
    click.echo("Runs tables (select runs and press Compare):")
    width = min(max(len(e[1]) for e in with_runs), 40)
    for exp_id, name, _ in with_runs[:_MAX_LISTED]:
        click.echo(f"  {name:<{width}}  {runs_url(url, exp_id)}")
    if len(with_runs) > _MAX_LISTED:
        click.echo(f"  ... and {len(with_runs) - _MAX_LISTED} more on the experiments page")


@click.command("ui")
@click.option("--uri", default=None, metavar="URI",
              help="Tracking store to browse. Default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///<current folder>/mlflow.db (where `automl-bin run` writes).")
@click.option("--experiment", "-e", default=None, metavar="NAME",
              help="Print the runs-table URL of this experiment (a recipe's "
                   "[experiment] name, or an experiment ID).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535),
              help="Port to serve on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; 0.0.0.0 exposes the UI, with no authentication, to "
                   "the network (see docs/comparing.md).")
def ui_command(uri: str | None, experiment: str | None, port: int, host: str) -> None:
    """Browse and compare tracked runs in the MLflow UI (Ctrl-C to stop).

    Starts an MLflow server on the tracking store that `automl-bin run` wrote to and prints the
    URL of each experiment's runs table,
    http://HOST:PORT/#/experiments/<ID>/runs?workflowType=machine_learning (the plain
    #/experiments/<ID> page is MLflow's GenAI overview). Each run is a parent run named
    <strategy>-<run folder> with nested "search" and "retrain" runs; tick runs in the table and
    press Compare to compare them.

    \b
    Examples:
      automl-bin ui                              # ./mlflow.db on http://127.0.0.1:5000
      automl-bin ui --experiment quickstart      # print that experiment's runs-table URL
      automl-bin ui --port 5001                  # another port
      automl-bin ui --uri sqlite:////data/exp/mlflow.db
      MLFLOW_TRACKING_URI=sqlite:///other.db automl-bin ui
    """
    uri = resolve_tracking_uri(uri)
    experiments = _check_store(uri, experiment, host, port)
    warning = exposure_warning(host, port)
    if warning is not None:
        click.echo(warning, err=True)
    _serve(uri, host, port, experiment, experiments)


def _check_store(uri: str, experiment: str | None, host: str,
                 port: int) -> list[Experiment] | None:
    """Refuse what would make the server fail or serve nothing, before it starts; the store's
    experiments when it is a sqlite file (None: ask the server once it is up)."""
    if uri.lower().startswith(("http://", "https://")):
        raise click.UsageError(
            f"--uri {uri} is already a tracking server; open it in a browser. "
            "`automl-bin ui` serves a store such as sqlite:///path/to/mlflow.db."
        )
    where = missing_sqlite_store(uri)
    if where is not None:
        raise click.UsageError(
            f"No tracking store found at {where}. Run `automl-bin run RECIPE` in this folder "
            "first, or pass --uri sqlite:////path/to/mlflow.db."
        )
    db = sqlite_path(uri)
    experiments = sqlite_experiments(db) if db is not None else None
    if experiment is not None and experiments is not None:
        _pick(experiments, experiment, uri)  # a wrong name fails before the server starts
    if not _port_free(host, port):
        raise click.UsageError(
            f"Port {port} on {host} is in use (another MLflow UI?); pass --port with a free port."
        )
    return experiments


def _serve(uri: str, host: str, port: int, experiment: str | None,
           experiments: list[Experiment] | None) -> None:
    """Run the server until it exits or Ctrl-C (or SIGTERM) stops it, printing its URLs."""
    url = f"http://{_browse_host(host)}:{port}"
    click.echo(f"Starting the MLflow UI for {uri} ...", err=True)
    proc = subprocess.Popen(server_command(uri, host, port), env=server_env())
    # SIGTERM to this command stops the server too, exactly like Ctrl-C (main thread only);
    # SIGINT gets the same handler because a process started with SIGINT ignored (e.g. from
    # a parent that ignores it) would otherwise never see Ctrl-C
    try:
        previous: Any = signal.signal(signal.SIGTERM, _raise_interrupt)
        previous_int: Any = signal.signal(signal.SIGINT, _raise_interrupt)
    except ValueError:
        previous = previous_int = _NOT_SET
    try:
        ready = _wait_ready(proc, f"{url}/health", _READY_TIMEOUT_S)
        if proc.poll() is not None:
            raise click.ClickException(
                f"The MLflow server exited with code {proc.returncode} before it was ready; "
                "its messages are above."
            )
        if ready:
            _announce(url, uri, experiment, experiments)
        else:
            click.echo(f"MLflow UI (still starting): {url}/#/experiments   (Ctrl-C to stop)")
        code = proc.wait()
        if code != 0:
            raise click.ClickException(f"The MLflow server exited with code {code}.")
    except KeyboardInterrupt:
        _stop(proc)
        click.echo("MLflow UI stopped.", err=True)
    finally:
        _stop(proc)
        if previous is not _NOT_SET:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
