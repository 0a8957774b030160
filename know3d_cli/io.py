"""Single files written atomically (temporary name, then rename); asset folders go through `outputs.write_asset`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode `open()` would
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_writable_dir(path: Path) -> Path:
    """Create `path` if needed and check that files can be created in it (one-line error otherwise)."""
    try:
        if path.exists() and not path.is_dir():
            raise OutputError(f"output path {path} exists and is not a directory; choose another --out")
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".know3d-write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"output directory {path} is not writable ({exc.strerror or exc}); choose another --out") from exc
    return path
