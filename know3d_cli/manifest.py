"""The batch manifest: a CSV with a header row and columns `image` (required), `back`, `id`, `seed`.

A problem with the whole file (missing, not UTF-8, no `image` column) raises `InputError`. A problem with one row
(unsafe id, bad seed, duplicate id, stray fields) is recorded on that row's `error`, so the other rows still run.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from .config import MAX_SEED
from .errors import InputError

logger = logging.getLogger(__name__)

COLUMNS = ("image", "back", "id", "seed")
MAX_ID_LENGTH = 128
_FORBIDDEN_ID_CHARS = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')


@dataclass(frozen=True)
class ManifestRow:
    line: int  # 1-based line of the file where the row starts
    image: Path  # image path; relative paths are resolved against the manifest's folder
    back: str | None  # text about the back side, exactly as in the cell; None when the cell is blank or absent
    id: str | None  # output folder name; None when the row's id is unusable
    seed: int | None  # None when the cell is empty or absent (or invalid, see `error`)
    error: str | None = None  # why the row cannot run; None for a good row


def safe_id(name: str) -> str | None:
    """`name` (outer whitespace stripped) if it is safe as one output folder name, else None.

    Unsafe: empty, longer than 128 characters, a leading '.', '..' anywhere, a path separator ('/' or '\\'),
    a character Windows forbids in file names (`:*?"<>|`), or a control character.
    """
    name = name.strip()
    if not name or len(name) > MAX_ID_LENGTH or name.startswith(".") or ".." in name:
        return None
    if _FORBIDDEN_ID_CHARS.search(name):
        return None
    return name


def read_manifest(path: Path) -> list[ManifestRow]:
    """Parse a manifest into rows, in file order (blank lines skipped).

    UTF-8 with or without BOM; standard CSV quoting (commas and newlines inside quoted fields). Header names are
    matched case-insensitively; unknown columns are ignored with a warning. Ids come from the `id` column or the
    image's file stem; a derived id that repeats an earlier one gets a suffix (`chair`, `chair-2`, ...), while a
    repeated explicit id is an error on the later row. Ids compare case-insensitively (case-insensitive file
    systems would merge their folders).

    Raises:
        InputError: the file is missing, unreadable, not UTF-8, not CSV, or has no `image` column.
    """
    path = Path(path)
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # an unclosed quote must not eat rows
    try:
        header, header_line = _header(reader)
        if header is None:
            raise InputError(f"manifest {path} is empty; expected a header row with an 'image' column")
        columns = _columns(header, path)
        raw_rows = []
        previous_end = header_line
        for fields in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not any(field.strip() for field in fields):
                continue  # blank line (or only empty cells)
            raw_rows.append(_parse_row(start, fields, columns, len(header), path.parent))
    except csv.Error as exc:
        raise InputError(f"manifest {path} is not valid CSV (line {reader.line_num}: {exc}); check that quoted "
                         'cells are closed and written as "..." with inner quotes doubled') from exc
    return _assign_ids(raw_rows)


# ------------------------------------------------------------------------------------ parsing
@dataclass
class _RawRow:
    line: int
    image: Path
    back: str | None
    explicit_id: str | None  # the id cell, stripped; None when empty or absent
    seed: int | None
    error: str | None


def _read_text(path: Path) -> str:
    if not path.exists():
        raise InputError(f"manifest not found: {path}")
    if path.is_dir():
        raise InputError(f"manifest {path} is a directory, not a CSV file")
    try:
        data = path.read_bytes()
    except PermissionError as exc:
        raise InputError(f"cannot read manifest {path}: permission denied") from exc
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"manifest {path} is not UTF-8 text (invalid byte at line {line}); save it as UTF-8 CSV") \
            from exc


def _header(reader) -> tuple[list[str] | None, int]:
    for fields in reader:
        if any(field.strip() for field in fields):
            return [field.strip().lower() for field in fields], reader.line_num
    return None, reader.line_num


def _columns(header: list[str], path: Path) -> dict[str, int]:
    if "image" not in header:
        raise InputError(f"manifest {path} has no 'image' column (header: {', '.join(map(repr, header)) or 'empty'}); "
                         f"expected columns {', '.join(COLUMNS)}")
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        if name in COLUMNS:
            if name in columns:
                raise InputError(f"manifest {path} has the column {name!r} twice")
            columns[name] = index
    extra = [name for name in header if name not in COLUMNS]
    if extra:
        logger.warning("manifest %s: ignoring unknown column(s) %s (known: %s)", path, ", ".join(map(repr, extra)),
                       ", ".join(COLUMNS))
    return columns


def _parse_row(line: int, fields: list[str], columns: dict[str, int], width: int, base: Path) -> _RawRow:
    def cell(name: str) -> str | None:
        index = columns.get(name)
        if index is None or index >= len(fields):
            return None
        value = fields[index]
        return value if value.strip() else None

    errors = []
    image_cell = cell("image")
    image = Path()
    if image_cell is None:
        errors.append("the image cell is empty")
    elif "\x00" in image_cell:
        errors.append("the image path contains a NUL character")
    else:
        image = _image_path(image_cell.strip(), base)
        if image is None:
            image = Path()
            errors.append(f"cannot expand the image path {image_cell.strip()!r} (unknown user after '~')")
    if len(fields) > width:
        errors.append(f"{len(fields)} fields but the header has {width}; quote cells that contain commas")
    seed = None
    seed_cell = cell("seed")
    if seed_cell is not None:
        seed = _parse_seed(seed_cell.strip())
        if seed is None:
            errors.append(f"seed {seed_cell.strip()!r} is not an integer in [0, 2^63-1]")
    id_cell = cell("id")
    back = cell("back")
    return _RawRow(line=line, image=image, back=back,
                   explicit_id=id_cell.strip() if id_cell is not None else None, seed=seed,
                   error="; ".join(errors) if errors else None)


def _image_path(text: str, base: Path) -> Path | None:
    """`text` with `~` expanded, relative to `base`; None when `~user` names no user."""
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        return None
    return path if path.is_absolute() else base / path


def _parse_seed(text: str) -> int | None:
    if not re.fullmatch(r"\+?[0-9]+", text):
        return None
    value = int(text)
    return value if value <= MAX_SEED else None


def _assign_ids(raw_rows: list[_RawRow]) -> list[ManifestRow]:
    """Explicit ids are claimed first (the first row keeps a repeated one); derived ids then avoid all of them."""
    taken: set[str] = set()
    ids: dict[int, str | None] = {}
    errors: dict[int, list[str]] = {i: [raw.error] if raw.error else [] for i, raw in enumerate(raw_rows)}
    for i, raw in enumerate(raw_rows):
        if raw.explicit_id is None:
            continue
        ident = safe_id(raw.explicit_id)
        if ident is None:
            ids[i] = None
            errors[i].insert(0, f"unsafe id {raw.explicit_id!r}: use a plain file name without '/', '\\', "
                                "'..' or a leading '.'")
        elif ident.casefold() in taken:
            ids[i] = None
            errors[i].insert(0, f"duplicate id {ident!r} (already used by an earlier row)")
        else:
            ids[i] = ident
            taken.add(ident.casefold())
    for i, raw in enumerate(raw_rows):
        if raw.explicit_id is not None or not raw.image.name:
            ids.setdefault(i, None)
            continue
        stem = safe_id(raw.image.stem)
        if stem is None:
            ids[i] = None
            errors[i].insert(0, f"image name {raw.image.name!r} gives an unsafe id; add an 'id' cell")
            continue
        ident, n = stem, 1
        while ident.casefold() in taken:
            n += 1
            ident = f"{stem}-{n}"
        ids[i] = ident
        taken.add(ident.casefold())
    return [ManifestRow(line=raw.line, image=raw.image, back=raw.back, id=ids[i], seed=raw.seed,
                        error="; ".join(errors[i]) if errors[i] else None)
            for i, raw in enumerate(raw_rows)]
