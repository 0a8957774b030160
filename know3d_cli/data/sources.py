"""What `know3d data build ASSETS` reads: a folder, a glob or a CSV of 3D assets, each with a sample id.

- A folder: every .glb/.gltf/.obj/.ply under it (recursively), in sorted path order.
- A glob (`'assets/**/*.glb'`, quoted so that the shell leaves it alone): every file it matches, sorted.
- A CSV with a header row: `asset` (required; paths relative to the CSV's folder), `id`, `caption` (the parts of
  the back, separated by `data.text.separator`, default `;`: `a round handle; a zipper pocket`). UTF-8 with or
  without BOM, blank lines ignored.

Ids: the CSV's `id`, else the file stem. Stems that collide (compared case-insensitively) all get a suffix from the
asset's path (`chair-3f2a9c1e`), so an id depends on its own asset only and never moves between shards when assets
are added. A problem with one asset (unsafe or repeated id, empty cell) is recorded on it, and the build fails that
asset alone; a problem with the whole input is an `InputError` (exit 3).
"""

from __future__ import annotations

import csv
import glob
import io
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..manifest import safe_id
from ..shard import stable_hash
from .asset import SUFFIXES

logger = logging.getLogger(__name__)

COLUMNS = ("asset", "id", "caption")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class AssetSource:
    path: Path  # the asset file
    id: str | None  # sample id (folder name); None when no usable id exists (see `error`)
    caption: tuple[str, ...] | None  # back parts from the CSV `caption` cell; None = no caption given
    line: int | None = None  # CSV line of the row (None for folders and globs)
    error: str | None = None  # why this asset cannot be built; None for a usable one

    @property
    def key(self) -> str:
        """What the shard split hashes: the id, or the path when there is no id."""
        return self.id if self.id is not None else str(self.path)


def read_sources(spec: str, separator: str = ";") -> list[AssetSource]:
    """Every asset named by `spec` (folder, glob or CSV), with ids assigned (module docstring).

    Raises:
        InputError: nothing exists at `spec`, the glob matches nothing, or the CSV is unreadable or lacks `asset`.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise InputError(f"no asset ({' '.join(SUFFIXES)}) found under {path}")
        return _with_ids([AssetSource(f, None, None) for f in files], path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _with_ids(_read_csv(path, separator), path.parent)
    if path.is_file():
        return _with_ids([AssetSource(path, None, None)], path.parent)
    if _GLOB_CHARS & set(spec):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"the pattern {spec!r} matches no file")
        return _with_ids([AssetSource(f, None, None) for f in files], Path(_glob_root(spec)))
    raise InputError(f"assets not found: {spec} is neither a folder, a CSV file, an asset file nor a glob pattern")


def caption_parts(cell: str | None, separator: str) -> tuple[str, ...] | None:
    """The back parts of a caption cell (each stripped, empty ones dropped); None for an empty cell."""
    if cell is None:
        return None
    parts = tuple(" ".join(part.split()) for part in cell.split(separator))
    parts = tuple(part for part in parts if part)
    return parts or None


def _glob_root(spec: str) -> str:
    """The folder part of a pattern before its first wildcard (ids' path suffixes are relative to it)."""
    head = []
    for piece in Path(spec).parts:
        if _GLOB_CHARS & set(piece):
            break
        head.append(piece)
    return str(Path(*head)) if head else "."


def _read_csv(path: Path, separator: str) -> list[AssetSource]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"asset list {path} is not UTF-8 text; save it as UTF-8 CSV") from exc
    except OSError as exc:
        raise InputError(f"cannot read asset list {path}: {exc.strerror or exc}") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    sources: list[AssetSource] = []
    try:
        header = None
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if header is None:
                header = [field.strip().lower() for field in fields]
                if "asset" not in header:
                    raise InputError(f"asset list {path} has no 'asset' column (header: {', '.join(header)}); "
                                     f"expected columns {', '.join(COLUMNS)}")
                unknown = [name for name in header if name not in COLUMNS]
                if unknown:
                    logger.warning("asset list %s: ignoring column(s) %s", path, ", ".join(unknown))
                continue
            cells = {name: fields[i].strip() for i, name in enumerate(header) if i < len(fields) and fields[i].strip()}
            asset = Path(cells.get("asset", "")).expanduser()
            error = None if "asset" in cells else "the asset cell is empty"
            sources.append(AssetSource(asset if asset.is_absolute() else path.parent / asset, cells.get("id"),
                                       caption_parts(cells.get("caption"), separator), reader.line_num, error))
    except csv.Error as exc:
        raise InputError(f"asset list {path} is not valid CSV (line {reader.line_num}: {exc})") from exc
    if header is None:
        raise InputError(f"asset list {path} is empty; expected a header row with an 'asset' column")
    return sources


def _with_ids(sources: list[AssetSource], root: Path) -> list[AssetSource]:
    """Explicit ids are checked (safe, unique); stems become ids, colliding ones suffixed by their path's hash."""
    explicit = Counter((s.id or "").casefold() for s in sources if s.id is not None)
    stems = Counter(s.path.stem.casefold() for s in sources if s.id is None)
    seen: set[str] = set()
    result = []
    for source in sources:
        error, ident = source.error, None
        if source.id is not None:
            ident = safe_id(source.id)
            if ident is None:
                error = error or f"unsafe id {source.id!r}: use a plain folder name without '/', '..' or a leading '.'"
            elif ident.casefold() in seen:
                error = error or f"duplicate id {ident!r} (already used by an earlier row)"
        elif error is None:
            ident = safe_id(source.path.stem)
            if ident is None:
                error = f"the file name {source.path.name!r} gives an unsafe id; list it in a CSV with an 'id'"
            elif stems[ident.casefold()] > 1 or ident.casefold() in explicit:
                ident = f"{ident}-{stable_hash(_relative(source.path, root)) & 0xFFFFFFFF:08x}"
        if ident is not None:
            seen.add(ident.casefold())
        result.append(AssetSource(source.path, ident if error is None else None, source.caption, source.line, error))
    return result


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


__all__ = ["COLUMNS", "AssetSource", "caption_parts", "read_sources"]
