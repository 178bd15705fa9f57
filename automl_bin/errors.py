"""Errors the CLI turns into one-paragraph messages and exit codes.

`UsageError` (exit 2) is for bad input the user can fix: a recipe, an argument, missing data.
`PluginError` (exit 2) names the plugin and its distribution. Anything else is a runtime
failure (exit 1).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["AutomlBinError", "UsageError", "PluginError", "DataNotFoundError", "StopRun",
           "suggest", "add_note", "notes_of"]


class AutomlBinError(Exception):
    """Base class of every error automl-bin raises on purpose."""

    exit_code = 1
    #: the folder of the run this error stopped, when it can be resumed from there
    run_dir: Path | None = None


class UsageError(AutomlBinError):
    """Bad input: a recipe, a command-line argument or a missing file. Exit code 2."""

    exit_code = 2


class DataNotFoundError(UsageError):
    """A data set is not on disk and may not be downloaded; the message says how to get it."""


class StopRun(AutomlBinError):
    """Raised by an observer (a lifecycle hook) that cannot let the run go on, e.g. a tracker
    whose server went away with ``[tracking] on_error = "stop"``. Unlike other exceptions in
    observers it is not swallowed: the runner stops the run, keeps its checkpoint (so it can be
    resumed) and shows the message. Exit code 1."""


class PluginError(AutomlBinError):
    """A plugin misbehaved (import error, hook raising, wrong type, duplicate name)."""

    exit_code = 2


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` (Python 3.11+), also on 3.10; a note already there is kept once."""
    notes = list(getattr(exc, "__notes__", []))
    if note not in notes:
        exc.__notes__ = [*notes, note]  # what add_note stores; 3.11 tracebacks print it too


def notes_of(exc: BaseException) -> str:
    """The notes of ``exc`` (e.g. the plugin that raised it) as one sentence, or ''."""
    return "".join(f" {note}" for note in getattr(exc, "__notes__", []))


def suggest(word: str, candidates: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest candidate, or '' when none is close."""
    matches = difflib.get_close_matches(word, sorted(candidates), n=3, cutoff=0.6)
    if not matches:
        return ""
    quoted = " or ".join(f"'{m}'" for m in matches)
    return f" Did you mean {quoted}?"
