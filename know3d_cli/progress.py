"""Progress on stderr (Rich), shown only on a terminal and without --quiet.

One bar per running stage (`stage`), with its step n/N and the time remaining once the stage reports steps
(`steps`), under the batch's asset counter; a finished stage's bar is removed, and the whole display is cleared at
the end. Columns are sized to stay on one line in an 80-column terminal.

stdout is never touched: data written there reaches its pipe or file whether or not stderr is a terminal
(`paused` takes the bars off the screen while a line goes to a terminal stdout). Text written to `sys.stderr`
while the bars show (log lines, warnings) is printed above them.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator

logger = logging.getLogger(__name__)

DESCRIPTION_WIDTH = 30  # characters of "<asset> <stage>: <sub-stage>" shown; longer ones end in "…"


class Progress:
    """Stage and item progress. A no-op when disabled, so callers never branch on it."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty()
        self._rich = None
        self._items = None
        self._stage = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress
            from rich.table import Column

            # spinner 1 + name 30 + bar 12 + n/N 9 + remaining 8 + elapsed 7, with the gaps: under 80 columns
            self._rich = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}", table_column=Column(width=DESCRIPTION_WIDTH, no_wrap=True,
                                                                     overflow="ellipsis")),
                BarColumn(bar_width=12), MofNCompleteColumn(table_column=Column(width=9, justify="right")),
                TimeRemainingColumn(compact=True), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True, redirect_stdout=False, redirect_stderr=True)
            self._rich.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
            self._rich = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Clear the bars from the terminal for the block when stdout is a terminal too (a line printed there would
        otherwise be drawn over); redraw them after."""
        if self._rich is None or not sys.stdout.isatty():
            yield
            return
        self._rich.stop()
        try:
            yield
        finally:
            self._rich.start()

    def items(self, total: int) -> None:
        """Start an item counter (batch)."""
        if self._rich is not None:
            self._items = self._rich.add_task("assets", total=total)

    def advance(self) -> None:
        if self._rich is not None and self._items is not None:
            self._rich.advance(self._items)

    @contextmanager
    def stage(self, name: str, asset: str = "") -> Iterator[None]:
        """Show `name` as the running stage while the block runs; always log it at debug level."""
        logger.debug("stage %s %s", name, asset)
        if self._rich is not None:
            description = f"{asset} {name}".strip()
            self._stage = (self._rich.add_task(description, total=None), description)
        try:
            yield
        finally:
            if self._stage is not None and self._rich is not None:
                self._rich.remove_task(self._stage[0])
            self._stage = None

    def note(self, detail: str) -> None:
        """Show what the running stage is doing now (e.g. TRELLIS.2's "shape" sub-stage); its step count restarts."""
        logger.debug("  %s", detail)
        if self._rich is not None and self._stage is not None:
            task, description = self._stage
            self._rich.remove_task(task)  # a new bar: Rich cannot set a total back to "unknown"
            self._stage = (self._rich.add_task(f"{description}: {detail}", total=None), description)

    def steps(self, done: int, total: int) -> None:
        """The running stage has done `done` of its `total` steps (a sampler's `on_step`)."""
        if self._rich is not None and self._stage is not None:
            self._rich.update(self._stage[0], completed=done, total=total)
