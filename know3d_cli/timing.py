"""Per-step wall-clock timing (TRELLIS.2 stages and export steps, reported in metadata and by the benchmarks)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


__all__ = ["timed"]
