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
from .marker import check_replaceable, clear, is_complete, mark_complete
from .mllm import write_tiny_mllm
from .trellis2 import write_tiny_trellis2

logger = logging.getLogger(__name__)

LAYOUT_VERSION = "2"  # 2: TRELLIS.2 encoders added
SET_KIND = f"set-v{LAYOUT_VERSION}"  # completion-marker kind of the whole tiny set


def build_tiny_models(root: Path, seed: int = 0) -> Path:
    """Write the complete tiny set under `root` (once; a marker file written last makes it idempotent).

    An interrupted write, a set of another layout version or seed, and a set written by an earlier know3d (marker
    `.complete-v1`) are rebuilt. A folder know3d did not create is never written into or deleted (`tiny.marker`).

    Raises:
        ConfigError: `root` is a file, a non-empty folder know3d did not create, or cannot be created.
    """
    root = Path(root).expanduser()
    if is_complete(root, SET_KIND, seed):
        return root
    check_replaceable(root)  # before anything is created next to a foreign folder
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create models.tiny_root={root} ({exc.strerror or exc}); point models.tiny_root / "
                          "KNOW3D_TINY_DIR at a writable folder") from exc
    with AssetLock(root.parent, root.name):  # two first runs at once: the second waits, then finds it complete
        if is_complete(root, SET_KIND, seed):
            return root
        clear(root)  # refuses a file or a foreign folder; replaces an older or half-written set of ours
        logger.info("writing tiny random models to %s", root)
        write_tiny_editor(root / "editor", seed=seed)
        write_tiny_mllm(root / "mllm", seed=seed)
        write_tiny_dinov3(root / "dinov3", seed=seed)
        write_tiny_trellis2(root, seed=seed, cond_channels=TINY_DINOV3_HIDDEN)
        write_tiny_adapter(root / "adapter", ext_channels=TINY_EDITOR_HIDDEN, seed=seed)
        mark_complete(root, SET_KIND, seed)
    return root


__all__ = ["build_tiny_models"]
