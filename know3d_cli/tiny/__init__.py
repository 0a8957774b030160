"""Tiny random-initialised versions of every model, written in the real on-disk layouts.

For tests and `know3d demo` only: they exercise the real loading code and the real chain on a CPU in
seconds, and produce meaningless assets.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ConfigError
from ..outputs import AssetLock
from .adapter import write_tiny_adapter
from .dinov3 import TINY_DINOV3_HIDDEN, write_tiny_dinov3
from .editor import TINY_EDITOR_HIDDEN, write_tiny_editor
from .mllm import write_tiny_mllm
from .trellis2 import write_tiny_trellis2

logger = logging.getLogger(__name__)

LAYOUT_VERSION = "1"
_MARKER = f".complete-v{LAYOUT_VERSION}"
_OWNED = ".know3d-tiny-root"  # written first: this folder was created by know3d


def build_tiny_models(root: Path, seed: int = 0) -> Path:
    """Write the complete tiny set under `root` (once; a marker file written last makes it idempotent).

    An interrupted write is completed next time. A folder know3d did not create is never written into or deleted.

    Raises:
        ConfigError: `root` is a file, a non-empty folder know3d did not create, or cannot be created.
    """
    root = Path(root).expanduser()
    if (root / _MARKER).is_file():
        return root
    _claim(root)
    with AssetLock(root.parent, root.name):  # two first runs at once: the second waits, then finds it complete
        if (root / _MARKER).is_file():
            return root
        logger.info("writing tiny random models to %s", root)
        write_tiny_editor(root / "editor", seed=seed)
        write_tiny_mllm(root / "mllm", seed=seed)
        write_tiny_dinov3(root / "dinov3", seed=seed)
        write_tiny_trellis2(root, seed=seed, cond_channels=TINY_DINOV3_HIDDEN)
        write_tiny_adapter(root / "adapter", ext_channels=TINY_EDITOR_HIDDEN, seed=seed)
        (root / _MARKER).write_text("tiny random models for know3d tests and demo\n")
    return root


def _claim(root: Path) -> None:
    """Create `root` (or accept an empty one, or one know3d created) and mark it as know3d's."""
    where = f"models.tiny_root={root}"
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{where} is a file, not a folder; point models.tiny_root / KNOW3D_TINY_DIR at a folder")
    try:
        if root.is_dir() and any(root.iterdir()) and not (root / _OWNED).is_file():
            raise ConfigError(f"{where} is a non-empty folder that know3d did not create; refusing to write tiny "
                              "models into it (nothing was changed): point models.tiny_root / KNOW3D_TINY_DIR at an "
                              "empty or new folder")
        root.mkdir(parents=True, exist_ok=True)
        (root / _OWNED).touch()
    except OSError as exc:
        raise ConfigError(f"cannot create {where} ({exc.strerror or exc}); point models.tiny_root / "
                          "KNOW3D_TINY_DIR at a writable folder") from exc


__all__ = ["build_tiny_models"]
