"""Progress display: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

__all__ = ["Progress"]

T = TypeVar("T")


class Progress:
    """Shows progress of long loops. ``enabled=False`` silences it (tests, --quiet)."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True,
                 force_plain: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.fancy = enabled and not force_plain and self.stream.isatty()

    def info(self, message: str) -> None:
        if self.enabled:
            print(message, file=self.stream, flush=True)

    def track(self, iterable: Iterable[T], total: int | None, description: str) -> Iterator[T]:
        if not self.enabled:
            yield from iterable
            return
        if self.fancy:
            from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            from rich.progress import Progress as RichProgress

            with RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), TimeRemainingColumn(), transient=True) as bar:
                task = bar.add_task(description, total=total)
                for item in iterable:
                    yield item
                    bar.advance(task)
            return
        # plain mode: a line at roughly every quarter, so logs show the run is alive
        start = time.perf_counter()
        marks = {max(1, round(total * q / 4)) for q in (1, 2, 3)} if total else set()
        done = 0
        for item in iterable:
            yield item
            done += 1
            if done in marks:
                elapsed = time.perf_counter() - start
                print(f"{description}: {done}/{total} steps, {elapsed:.1f}s", file=self.stream,
                      flush=True)
