"""The output folder, shared safely by any number of processes: per-asset locks, all-or-nothing asset folders and the
append-only `results.jsonl`.

Layout of `<out>/`: `<id>/` (a finished asset), `results.jsonl` (batch journal), and while an asset is being made,
`.<id>.lock`, `.<id>.partial-<8 hex>` (the folder being written) and, for an instant while a finished asset is
replaced, `.<id>.old-<8 hex>`.

Guarantees, on a local filesystem and on NFS (Linux emulates `flock` with NFS byte-range locks):

- **One writer per asset.** `AssetLock(out, id)` holds an exclusive `flock` on `<out>/.<id>.lock` for as long as an
  asset is checked, generated and written. The kernel drops the lock when its process dies, even by SIGKILL, so a
  lock never goes stale; the lock file is removed on release (an inode check after locking makes that race-free).
  A filesystem without locks is a one-line `OutputError`, never silent sharing.
- **All or nothing.** `write_asset` writes every file into `.<id>.partial-<hex>`, fsyncs the files and the folder,
  then renames it to `<id>` in one step: `<id>/` is either absent, the previous asset, or the complete new one. A
  replaced asset is moved aside first and deleted only once the new folder is in place; a failure before that puts
  it back, so nothing already written is lost.
- **Leftovers are cleaned.** Whoever next holds an id's lock (`recover`, called by `AssetLock` on every acquire)
  removes the partial folders of killed writers and restores an asset that a killed writer had moved aside;
  `clean_stale` does this for every id in `<out>` (batch start), skipping ids that another process holds.
- **results.jsonl only grows by whole lines.** `ResultsLog.append` writes one JSON line with O_APPEND under an
  exclusive `flock` on the file, then flushes and fsyncs it before returning. A line torn by a crash or a full disk
  is cut off before the next append. Every run appends (each line carries its `run`); readers take the last line per
  id (`latest_results`). Together with the lock, the last line of an id describes its folder: a batch appends an
  item's line while still holding its lock, after the folder is in place. A process killed in between leaves an
  asset without its line; the next batch over the same manifest finds the asset finished and appends it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import metadata
from .choices import Choice
from .errors import OutputError, WriteFailure
from .metadata import dumps

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"  # the batch journal in <out>
_TOKEN = r"[0-9a-f]{8}"
_LEFTOVER = re.compile(rf"\.(?P<id>.+)\.(?P<kind>partial|old)-{_TOKEN}")
_LOCK_SUFFIX = ".lock"
# the longest name derived from an id: ".<id>.partial-<8 hex>"
_DERIVED_OVERHEAD = len("..partial-") + 8
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def check_asset_path(out: Path, asset_id: str) -> None:
    """Fail early (before any model loads) when `<out>/<id>` cannot hold an asset.

    Raises:
        OutputError: the id is too long for the filesystem, `<out>/<id>` is not a folder, or it is a folder that
            holds files know3d did not write (a regenerated asset replaces its folder as a whole).
    """
    name_max = _name_max(out)
    length = len(asset_id.encode("utf-8"))
    if length + _DERIVED_OVERHEAD > name_max:
        raise OutputError(f"asset id {asset_id!r} is too long for the filesystem of {out} ({length} bytes in UTF-8; "
                          f"at most {name_max - _DERIVED_OVERHEAD}); choose a shorter --id")
    target = out / asset_id
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise OutputError(f"{target} exists and is not a folder; remove it or choose another --id / --out")
    if target.is_dir():
        try:
            foreign = sorted(name for name in os.listdir(target) if not _is_asset_file(name))
        except OSError as exc:
            raise OutputError(f"cannot read {target} ({exc.strerror or exc}); choose another --id / --out") from exc
        if foreign:
            raise OutputError(f"{target} holds files know3d did not write ({', '.join(foreign[:3])}); a new asset "
                              "would replace the folder: move them away or choose another --id / --out")


ASSET_FILES = {"model.glb", "model.obj", "model.mtl", "model.ply", "input.png", "back.png", "preview.png",
               "turntable.webp", "metadata.json"}
ASSET_FILES |= {f"model_{texture}.{ext}" for texture in ("basecolor", "roughness", "metallic")  # the OBJ's textures
                for ext in ("png", "webp")}


class ExistingAsset(Choice):
    """What a run does with an asset folder that already holds a finished asset (`--overwrite`, `--skip-existing`)."""

    refuse = "refuse"  # fail the item before any work (`generate`'s default)
    skip = "skip"  # keep it and report the item as skipped (`batch`'s default: a re-run resumes)
    overwrite = "overwrite"  # regenerate and replace it whole


def finished_asset(out: Path, asset_id: str) -> dict[str, Any] | None:
    """The metadata of the finished asset in `<out>/<id>` (every file it lists is there), else None.

    A folder that is absent, holds only a dry run's `input.png`, or lost a file is not a finished asset.
    """
    folder = out / asset_id
    meta = metadata.read(folder / metadata.METADATA_FILE)
    if meta is None:
        return None
    files = meta.get("files", [])
    if not isinstance(files, list) or not all(isinstance(name, str) and (folder / name).is_file() for name in files):
        return None
    return meta


def _is_asset_file(name: str) -> bool:
    # earlier versions wrote each file through a hidden ".<name>.<random>.tmp"
    return name in ASSET_FILES or (name.startswith(".") and name.endswith(".tmp"))


def _name_max(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


# ------------------------------------------------------------------------------------ lock
class AssetLock:
    """Exclusive lock on one asset id in one output folder, across processes and machines.

    Use `with AssetLock(out, id):` to wait for it, or `acquire(blocking=False)` to skip an id another process holds.
    Not re-entrant: one process must not take the same id twice.
    """

    def __init__(self, out: Path, asset_id: str):
        self.out = Path(out)
        self.asset_id = asset_id
        self.path = self.out / f".{asset_id}{_LOCK_SUFFIX}"
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock (waiting for it when `blocking`); False when another process holds it and not blocking.

        Leftovers of a killed writer of this id are cleaned once the lock is held.
        """
        if self._fd is not None:
            raise RuntimeError(f"lock on {self.path} is already held")
        while True:
            try:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
                except PermissionError:  # another user's lock file: flock works on a read-only descriptor too
                    fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise OutputError(f"cannot create the lock file {self.path} ({exc.strerror or exc}); "
                                  "choose another --out") from exc
            try:
                if not self._flock(fd, blocking):
                    os.close(fd)
                    return False
                if _same_file(fd, self.path):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the holder before us removed this file while we waited: lock the new one
        self._fd = fd
        _write_owner(fd)
        recover(self.out, self.asset_id)
        return True

    def _flock(self, fd: int, blocking: bool) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in _NO_LOCKS:
                raise OutputError(f"the filesystem of {self.out} does not support file locks ({exc.strerror}); "
                                  "choose another --out") from exc
            raise
        return True

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it ("host pid N"); "" when unknown."""
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: waiters then see a removed file and retry
        except OSError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> AssetLock:
        if not self.acquire(blocking=False):
            logger.info("%s is being generated by another process (%s); waiting for it", self.asset_id,
                        self.holder() or "unknown")
            self.acquire(blocking=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _write_owner(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # only informative; a full disk must not stop the lock from working


# ------------------------------------------------------------------------------------ asset folders
def write_asset(out: Path, asset_id: str, files: Mapping[str, bytes]) -> Path:
    """Write `files` (name -> content, in order) as the folder `<out>/<id>`, all or nothing; the caller holds the
    id's `AssetLock`.

    Raises:
        WriteFailure: a write failed (disk full, I/O error); `<out>/<id>` is as it was before the call.
    """
    target = out / asset_id
    token = secrets.token_hex(4)
    staging = out / f".{asset_id}.partial-{token}"
    aside = out / f".{asset_id}.old-{token}"
    moved = False
    try:
        staging.mkdir()
        for name, data in files.items():
            _write_synced(staging / name, data)
        _fsync_dir(staging)
        if target.is_dir() and not target.is_symlink():
            os.rename(target, aside)
            moved = True
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if moved and not target.exists():
            os.rename(aside, target)
        raise WriteFailure(f"cannot write asset {asset_id!r} to {out} ({exc.strerror or exc}); "
                           f"{_hint(exc)} (nothing was written)", os_errno=exc.errno) from exc
    try:
        _fsync_dir(out)  # make the rename durable; the asset is in place either way
    except OSError as exc:
        logger.warning("could not fsync %s (%s)", out, exc.strerror or exc)
    if moved:
        shutil.rmtree(aside, ignore_errors=True)
    return target


def _hint(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some disk space or choose another --out"
    return "check the output folder"


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(out: Path, asset_id: str) -> None:
    """Clean what killed writers of `asset_id` left behind; the caller holds the id's lock.

    A folder moved aside while being replaced is put back when the replacement never landed; partial folders and
    other moved-aside folders are deleted.
    """
    try:
        names = os.listdir(out)
    except OSError:
        return
    leftovers = [(m["kind"], out / name) for name in names
                 if (m := _LEFTOVER.fullmatch(name)) is not None and m["id"] == asset_id]
    target = out / asset_id
    for kind, path in leftovers:
        if kind == "old" and not target.exists():
            logger.warning("%s: restoring the asset an interrupted run had moved aside", asset_id)
            os.rename(path, target)
            continue
        logger.info("%s: removing %s left by an interrupted run", asset_id, path.name)
        shutil.rmtree(path, ignore_errors=True)


def clean_stale(out: Path) -> None:
    """Clean the leftovers of killed writers for every id in `out` that no running process holds."""
    try:
        names = os.listdir(out)
    except OSError:
        return
    ids = {m["id"] for name in names if (m := _LEFTOVER.fullmatch(name)) is not None}
    ids |= {name[1:-len(_LOCK_SUFFIX)] for name in names
            if name.startswith(".") and name.endswith(_LOCK_SUFFIX) and len(name) > len(_LOCK_SUFFIX) + 1}
    for asset_id in sorted(ids):
        lock = AssetLock(out, asset_id)
        if lock.acquire(blocking=False):  # recovers on acquire; release removes a stale lock file
            lock.release()


# ------------------------------------------------------------------------------------ results.jsonl
class ResultsLog:
    """Append-only JSON-lines journal shared by every process writing to one output folder (see module doc)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot open {self.path} ({exc.strerror or exc}); choose another --out") from exc

    def append(self, record: Mapping[str, Any]) -> None:
        """Append `record` as one line, durably.

        Raises:
            WriteFailure: the line could not be written (disk full, I/O error); the file is left without it.
        """
        line = (dumps(dict(record)) + "\n").encode("utf-8")
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise OutputError(f"cannot lock {self.path} ({exc.strerror or exc}); choose another --out") from exc
        try:
            size = _drop_torn_line(self._fd)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view):]
                os.fsync(self._fd)
            except OSError as exc:
                try:
                    os.ftruncate(self._fd, size)
                except OSError:
                    pass
                raise WriteFailure(f"cannot append to {self.path} ({exc.strerror or exc}); {_hint(exc)}",
                                   os_errno=exc.errno) from exc
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ResultsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_torn_line(fd: int) -> int:
    """Cut the file after its last newline (a line torn by a crash); return the resulting size."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - 4096)
        chunk = os.pread(fd, end - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            end = start + cut + 1
            break
        end = start
    if end != size:
        logger.warning("results.jsonl: dropping a torn last line (%d bytes) left by an interrupted write", size - end)
        os.ftruncate(fd, end)
    return end


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every complete, parseable line of a results.jsonl, in order (a missing file is empty)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for line in data.split(b"\n")[:-1]:  # the part after the last newline is not a finished line
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def latest_results(records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The last record of every id (rows without an id are left out)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        if record.get("id") is not None:
            latest[str(record["id"])] = record
    return latest


__all__ = ["ASSET_FILES", "RESULTS_FILE", "AssetLock", "ExistingAsset", "ResultsLog", "check_asset_path",
           "clean_stale", "finished_asset", "latest_results", "read_results", "recover", "write_asset"]
