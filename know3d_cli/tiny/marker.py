"""The one marker of tiny model folders, `.know3d-tiny.json`: written first (the folder is know3d's, being written),
rewritten last (it is complete, with its kind and seed).

A folder is only ever deleted or written into when it is new, empty, or carries a marker, so a half-written folder
is rewritten next time while a folder know3d did not create is refused and left untouched. The root of a tiny set
written by earlier versions carries `.complete-v1` (or `.know3d-tiny-root`) instead; those names are accepted as
proof that know3d created the folder, which is then rebuilt in the current layout.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import ConfigError

_MARKER = ".know3d-tiny.json"
_LEGACY_MARKERS = (".complete-v1", ".know3d-tiny-root")  # roots of tiny sets written before this marker


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


def check_replaceable(path: Path) -> None:
    """Raise unless `path` is absent, an empty folder, or a folder know3d created (changes nothing).

    Raises:
        ConfigError: `path` is a file (or a link), or a non-empty folder without know3d's marker.
    """
    if not (path.exists() or path.is_symlink()):
        return
    if not path.is_dir() or path.is_symlink():
        raise ConfigError(f"cannot write tiny models to {path}: it exists and is not a folder; point "
                          "models.tiny_root / KNOW3D_TINY_DIR at a folder")
    try:
        foreign = any(path.iterdir()) and not any((path / name).is_file() for name in (_MARKER, *_LEGACY_MARKERS))
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror or exc}); point models.tiny_root / KNOW3D_TINY_DIR "
                          "at a writable folder") from exc
    if foreign:
        raise ConfigError(f"refusing to write tiny models into {path}: a non-empty folder that know3d did not create "
                          "(nothing was changed); point models.tiny_root / KNOW3D_TINY_DIR at an empty or new folder")


def clear(path: Path) -> None:
    """Make `path` an empty folder marked as know3d's (being written), removing a previous tiny folder there.

    Raises:
        ConfigError: `path` is not replaceable (`check_replaceable`; it is left untouched), or cannot be created.
    """
    check_replaceable(path)
    try:
        if path.is_dir() and any(path.iterdir()):
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / _MARKER).write_text(json.dumps({"writing": True}))
    except OSError as exc:
        raise ConfigError(f"cannot write tiny models to {path} ({exc.strerror or exc}); point models.tiny_root / "
                          "KNOW3D_TINY_DIR at a writable folder") from exc


__all__ = ["check_replaceable", "clear", "is_complete", "mark_complete"]
