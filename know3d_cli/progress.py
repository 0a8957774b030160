"""Progress on stderr (Rich), shown only on a terminal and without --quiet.

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
            from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=True,
                                      redirect_stdout=False, redirect_stderr=True)
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
        task = None
        if self._rich is not None:
            description = f"{asset} {name}".strip()
            task = self._rich.add_task(description, total=None)
            self._stage = (task, description)
        try:
            yield
        finally:
            self._stage = None
            if task is not None and self._rich is not None:
                self._rich.remove_task(task)

    def note(self, detail: str) -> None:
        """Show what the running stage is doing now (e.g. TRELLIS.2's "shape" sub-stage)."""
        logger.debug("  %s", detail)
        if self._rich is not None and self._stage is not None:
            task, description = self._stage
            self._rich.update(task, description=f"{description}: {detail}")
