"""Markers of tiny model folders: one written first (the folder is know3d's), rewritten last (it is complete).

Only a folder carrying a marker is ever deleted, so a half-written folder is rewritten next time while a folder
know3d did not create is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import ConfigError

_MARKER = ".know3d-tiny.json"


def is_complete(path: Path, kind: str, seed: int) -> bool:
    """True when `path` holds a finished tiny `kind` written with `seed` (the completion marker is written last)."""
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
    """Make `path` an empty folder marked as know3d's (being written), removing a previous tiny folder there.

    Raises:
        ConfigError: `path` is a file, or a non-empty folder without know3d's marker (it is left untouched).
    """
    if path.exists() or path.is_symlink():
        if not path.is_dir() or path.is_symlink():
            raise ConfigError(f"cannot write tiny models to {path}: it exists and is not a folder")
        if any(path.iterdir()):
            if not (path / _MARKER).is_file():
                raise ConfigError(f"refusing to replace {path}: a non-empty folder that know3d did not write "
                                  "(nothing was deleted); point models.tiny_root / KNOW3D_TINY_DIR elsewhere")
            shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / _MARKER).write_text(json.dumps({"writing": True}))


__all__ = ["clear", "is_complete", "mark_complete"]
