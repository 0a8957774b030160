"""Training metrics: one JSON object per logged step on stdout and in `<output_dir>/metrics.jsonl`, plus
TensorBoard scalars under `<output_dir>/tensorboard` when the `tensorboard` package is installed."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io import atomic_write

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsLog:
    """Where metric records go. Create it on the main process only.

    Args:
        output_dir: the run folder.
        emit: writes one JSON object as a line on stdout.
        tensorboard: also write TensorBoard scalars (skipped with a warning when `tensorboard` is missing).
    """

    def __init__(self, output_dir: Path, emit: Callable[[dict[str, Any]], None], tensorboard: bool):
        self.path = Path(output_dir) / METRICS_FILE
        self.emit = emit
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.warning("train.tensorboard=true but the tensorboard package is missing "
                               "(pip install 'know3d[train]'); metrics go to %s only", self.path)
            else:
                self.writer = SummaryWriter(str(Path(output_dir) / TENSORBOARD_DIR))

    def keep_until(self, step: int) -> None:
        """Drop records after `step` (a resumed run repeats those steps)."""
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and _step_of(line) is not None and _step_of(line) <= step]
        atomic_write(self.path, "".join(line + "\n" for line in kept).encode())

    def log(self, record: dict[str, Any]) -> None:
        """Emit `record` (it has "event" and "step") and append it to metrics.jsonl; numbers go to TensorBoard."""
        self.emit(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in _flatten(record).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                    self.writer.add_scalar(f"{record['event']}/{key}", value, record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out


__all__ = ["METRICS_FILE", "MetricsLog", "TENSORBOARD_DIR"]
