"""Runs whose process died: how they are recognised and closed in the run folder and MLflow.

A run killed with ``kill -9`` (or by the machine going away) writes no ``summary.json`` and
closes none of its tracked runs, which would stay RUNNING forever. The runner therefore keeps
its announcements (the MLflow run id and store) in ``announcements.json`` from its start, and
holds the run folder lock (`automl_bin.run_lock`) while alive. A folder with no lock holder and
no final status is dead: `dead_run_status` says so, and `mark_dead_run_killed` (``--resume``
calls it) writes ``summary.json`` with ``KILLED`` and marks the tracked parent run and its
phase runs that are still RUNNING as KILLED.

`tag_tracked_run` sets one tag on the tracked run named by a run's announcements (the changes
``--resume --allow-changes`` accepted). MLflow is reached through the core's
`automl_bin.tracking.store.make_client` and imported lazily.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automl_bin.checkpoint import write_text_atomic
from automl_bin.run_lock import lock_holder
from automl_bin.tracking.names import PARENT_TAG

__all__ = ["ANNOUNCEMENTS_FILE", "dead_run_status", "mark_dead_run_killed",
           "read_announcements", "record_announcements", "tag_tracked_run"]

ANNOUNCEMENTS_FILE = "announcements.json"
#: the status a run folder's summary.json holds once it ended one way or another
_FINAL = ("FINISHED", "FAILED", "KILLED")


def record_announcements(run_dir: Path, announcements: Mapping[str, Any]) -> None:
    """Keep the run's announcements (MLflow run id, store) where a dead run's can be found."""
    plain = {str(k): v for k, v in announcements.items()
             if isinstance(v, (str, int, float, bool)) or v is None}
    write_text_atomic(Path(run_dir) / ANNOUNCEMENTS_FILE, json.dumps(plain, indent=2))


def read_announcements(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(run_dir) / ANNOUNCEMENTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _summary_status(run_dir: Path) -> str | None:
    try:
        data = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("status") if isinstance(data, dict) else None


def dead_run_status(run_dir: Path) -> str:
    """``RUNNING (pid N)`` for a live run, its final status for an ended one, and ``DEAD`` for
    a run whose process died without ending it (no lock holder, no final status since its
    last start)."""
    pid = lock_holder(run_dir)
    if pid is not None:
        return f"RUNNING (pid {pid})"
    status = _summary_status(run_dir)
    if status not in _FINAL or _started_after_end(Path(run_dir)):
        return "DEAD"
    return str(status)


def _started_after_end(run_dir: Path) -> bool:
    """The run was started (resumed) again after its summary.json was written, and did not
    end: every start rewrites announcements.json."""
    try:
        started = (run_dir / ANNOUNCEMENTS_FILE).stat().st_mtime_ns
        ended = (run_dir / "summary.json").stat().st_mtime_ns
    except OSError:
        return False
    return started > ended


def mark_dead_run_killed(run_dir: Path) -> bool:
    """Close a dead run (see `dead_run_status`) as KILLED in its folder and its tracked runs;
    False (nothing done) when the run is alive or had ended."""
    if dead_run_status(run_dir) != "DEAD":
        return False
    reason = ("the run's process died without ending the run (kill -9, out of memory, power "
              "loss); marked KILLED when next seen")
    write_text_atomic(Path(run_dir) / "summary.json",
                      json.dumps({"status": "KILLED", "error": reason}, indent=2))
    _kill_tracked(read_announcements(run_dir))
    return True


def _kill_tracked(announcements: Mapping[str, Any]) -> None:
    """Mark the tracked parent run and its RUNNING phase runs KILLED (a warning if the store
    cannot be reached: the folder is marked either way)."""
    run_id, uri = announcements.get("mlflow_run_id"), announcements.get("mlflow_tracking_uri")
    if not run_id or not uri:
        return
    try:
        from automl_bin.tracking.store import make_client

        client = make_client(str(uri))
        parent = client.get_run(str(run_id))
        children = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'")
        end = int(time.time() * 1000)
        for run in [*children, parent]:
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, status="KILLED", end_time=end)
    except Exception as exc:  # the folder is marked; the store may be gone or remote and down
        warnings.warn(f"Could not mark MLflow run {run_id} in {uri} KILLED: "
                      f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)


def tag_tracked_run(announcements: Mapping[str, Any], key: str, value: str) -> bool:
    """Set tag ``key`` on the tracked run ``announcements`` name; False (with a warning) when
    it cannot be set, or when the run is not tracked."""
    run_id, uri = announcements.get("mlflow_run_id"), announcements.get("mlflow_tracking_uri")
    if not run_id or not uri:
        return False
    try:
        from automl_bin.tracking.store import make_client

        make_client(str(uri)).set_tag(str(run_id), key, value)
    except Exception as exc:
        warnings.warn(f"Could not tag MLflow run {run_id} with {key}: {type(exc).__name__}: "
                      f"{exc}", RuntimeWarning, stacklevel=2)
        return False
    return True
