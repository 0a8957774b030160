"""Per-step wall-clock timing (TRELLIS.2 stages and export steps, reported in metadata and by the benchmarks)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Optional

logger = logging.getLogger(__name__)


@contextmanager
def timed(timings: Optional[dict[str, float]], step: str) -> Iterator[None]:
    """Add the seconds spent in the block to `timings[step]` (when `timings` is given) and log them."""
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        logger.debug("%s: %.2f s", step, elapsed)
        if timings is not None:
            timings[step] = timings.get(step, 0.0) + elapsed


def timed_stages(
    timings: dict[str, float], on_start: Callable[[str], None] | None = None
) -> Callable[[str], AbstractContextManager[None]]:
    """A stage hook (e.g. for `Trellis2Pipeline`): times each named stage into `timings` and calls `on_start(name)`
    as it begins (progress display)."""

    def hook(stage: str) -> AbstractContextManager[None]:
        if on_start is not None:
            on_start(stage)
        return timed(timings, stage)

    return hook


__all__ = ["timed", "timed_stages"]
