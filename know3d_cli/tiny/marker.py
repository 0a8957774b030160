"""Completion markers of tiny model folders: written last, so a half-written folder is rewritten next time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

_MARKER = ".know3d-tiny.json"


def is_complete(path: Path, kind: str, seed: int) -> bool:
    """True when `path` holds a finished tiny `kind` written with `seed` (the marker is written last)."""
    marker = path / _MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == {"kind": kind, "seed": seed}
    except (OSError, ValueError):
        return False


def mark_complete(path: Path, kind: str, seed: int) -> None:
    (path / _MARKER).write_text(json.dumps({"kind": kind, "seed": seed}))


def clear(path: Path) -> None:
    """Remove a previous (possibly half-written) tiny folder before writing a new one."""
    if path.exists():
        shutil.rmtree(path)


__all__ = ["clear", "is_complete", "mark_complete"]
