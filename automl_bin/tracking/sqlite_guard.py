"""Sharing one sqlite MLflow store between processes started at the same time.

MLflow creates and migrates a sqlite store the first time a client opens it, with no lock: two
``automl-bin run`` processes starting together in a fresh folder race through the alembic
migrations (``table _alembic_tmp_... already exists``, ``duplicate column name``) and can leave a
half-migrated file that no later run can use. `store_lock` serialises opening the store with an
``fcntl.flock`` on ``<db>.lock`` beside the database; `with_retries` retries the errors sqlite
raises while another process writes (``database is locked``) or migrates (``already exists``)
with a growing pause, and `RetryingClient` applies it to every call of an ``MlflowClient``.
Imports neither mlflow nor torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["CALL_DELAYS_S", "OPEN_DELAYS_S", "RetryingClient", "is_transient",
           "quiet_transient_errors", "store_lock", "with_retries"]

T = TypeVar("T")

#: pauses between attempts of a tracking call that hit a locked database; each attempt itself
#: waits about 20 s for the lock (sqlite's busy wait, measured with MLflow 3.17), so a writer
#: holding the file for up to about two minutes loses nothing
CALL_DELAYS_S: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
#: pauses between attempts to open (create or migrate) the store
OPEN_DELAYS_S: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0)

#: sqlite's words for "another connection holds the file": safe to retry (nothing was written)
_LOCKED = ("database is locked", "database table is locked")
#: what a migration racing with another process's migration raises
_MIGRATING = ("already exists", "duplicate column name", "no such table")


def _messages(exc: BaseException) -> str:
    """The text of ``exc`` and of the exceptions it was raised from (MLflow wraps sqlalchemy's)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return " ".join(parts).lower()


def is_transient(exc: BaseException, *, opening: bool = False) -> bool:
    """True when ``exc`` is a sqlite error another process causes for a moment: a locked
    database, or (while ``opening`` the store) a migration step another process already did."""
    text = _messages(exc)
    if any(word in text for word in _LOCKED):
        return True
    return opening and any(word in text for word in _MIGRATING)


def with_retries(call: Callable[[], T], *, opening: bool = False,
                 delays: Sequence[float] = CALL_DELAYS_S) -> T:
    """``call()``, again after each pause of ``delays`` while it raises a transient sqlite error
    (see `is_transient`); the last error, or any other, is raised."""
    for delay in delays:
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc, opening=opening):
                raise
        time.sleep(delay)
    return call()


class _DropLockedErrors(logging.Filter):
    """Drops the ERROR record (with a traceback) MLflow logs for every failed session, when the
    failure is a locked database: the call is retried, and one that still fails raises with
    the reason, so the record would only bury the run's output in tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and is_transient(exc))


#: the MLflow logger that reports each failed database session
_MLFLOW_DB_LOGGER = "mlflow.store.db.utils"


def quiet_transient_errors() -> None:
    """Install `_DropLockedErrors` on MLflow's database logger (once per process)."""
    logger = logging.getLogger(_MLFLOW_DB_LOGGER)
    if not any(isinstance(f, _DropLockedErrors) for f in logger.filters):
        logger.addFilter(_DropLockedErrors())


@contextlib.contextmanager
def store_lock(db: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``<db>.lock`` (next to the sqlite file ``db``) while
    the store is opened, so one process at a time creates or migrates it.

    The lock file stays (an empty file, harmless); the lock itself dies with its process. A
    folder where the lock file cannot be written (a read-only store) is opened unlocked: nothing
    can create or migrate a store there anyway.
    """
    lock = db.with_name(db.name + ".lock")
    try:
        db.parent.mkdir(parents=True, exist_ok=True)  # MLflow creates it too
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class RetryingClient:
    """An ``MlflowClient`` whose every method call is retried on a locked sqlite database
    (`with_retries`); attributes that are not methods are passed through unchanged."""

    def __init__(self, client: Any, delays: Sequence[float] = CALL_DELAYS_S) -> None:
        self._client = client
        self._delays = tuple(delays)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def retried(*args: Any, **kwargs: Any) -> Any:
            return with_retries(lambda: attr(*args, **kwargs), delays=self._delays)

        retried.__name__ = name
        retried.__doc__ = attr.__doc__
        return retried

    def __repr__(self) -> str:
        return f"RetryingClient({self._client!r})"
