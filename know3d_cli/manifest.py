"""The batch manifest: a CSV with a header row and columns `image` (required), `back`, `id`, `seed`, `mode`,
`preview` and `overrides` (space-separated `key=value` config overrides, quoted as in a shell).

`-` reads the manifest from stdin (relative image paths are then relative to the working directory). The same rows
come from `generate`'s images (`rows_from_images`), so both commands name and check their assets alike.

A problem with the whole file (missing, not UTF-8, no `image` column) raises `InputError`. A problem with one row
(unsafe id, bad seed, mode or override, two rows with one id, stray fields) is recorded on that row's `error`, so
the other rows still run.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import secrets
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import MAX_SEED, Mode, Preview
from .errors import InputError
from .inputs import IdTemplate

logger = logging.getLogger(__name__)

COLUMNS = ("image", "back", "id", "seed", "mode", "preview", "overrides")
STDIN = "-"
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
    mode: Mode | None = None  # the row's `mode` cell; None = the command's (flag or config)
    preview: Preview | None = None  # the row's `preview` cell; None = the command's
    overrides: tuple[str, ...] = ()  # the row's `overrides` cell, split; applied after the command's overrides

    def config_overrides(self) -> list[str]:
        """The Hydra overrides that turn the command's configuration into this row's."""
        cells = [f"mode={self.mode.value}"] if self.mode is not None else []
        cells += [f"preview={self.preview.value}"] if self.preview is not None else []
        return cells + list(self.overrides)


@dataclass(frozen=True)
class RowDefaults:
    """What a row without its own cell gets (`--back`, `--seed`), and how ids are made."""

    back: str | None = None
    seed: int | None = None
    mode: str = Mode.auto.value  # the command's mode, for `{mode}` in the id template
    id_template: IdTemplate = IdTemplate()


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


def read_manifest(path: Path | str, defaults: RowDefaults = RowDefaults()) -> list[ManifestRow]:
    """Parse a manifest (`-`: stdin) into rows, in file order (blank lines skipped).

    UTF-8 with or without BOM; standard CSV quoting (commas and newlines inside quoted fields). Header names are
    matched case-insensitively; unknown columns are ignored with a warning. Ids come from the `id` column or the
    id template; two rows with one id are an error on the later row (explicit ids are claimed first). Ids compare
    case-insensitively (case-insensitive file systems would merge their folders).

    Raises:
        InputError: the file is missing, unreadable, not UTF-8, not CSV, or has no `image` column.
    """
    if str(path) == STDIN:
        text, path, base = _read_stdin(), Path("<stdin>"), Path.cwd()
    else:
        path = Path(path)
        text, base = _read_text(path), path.parent
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
            raw_rows.append(_parse_row(start, fields, columns, len(header), base, defaults))
            raw_rows[-1].index = len(raw_rows)
    except csv.Error as exc:
        raise InputError(f"manifest {path} is not valid CSV (line {reader.line_num}: {exc}); check that quoted "
                         'cells are closed and written as "..." with inner quotes doubled') from exc
    return _assign_ids(raw_rows, defaults)


def rows_from_images(images: list[Path], defaults: RowDefaults, explicit_id: str | None = None) -> list[ManifestRow]:
    """`generate`'s rows: one per image, numbered from 1, with the command's back text and seed."""
    raws = [_RawRow(line=i, image=image, back=defaults.back, explicit_id=explicit_id, seed=defaults.seed,
                    error=None, index=i) for i, image in enumerate(images, start=1)]
    for raw in raws:
        _draw_seed_for_template(raw, defaults)
    return _assign_ids(raws, defaults)


# ------------------------------------------------------------------------------------ parsing
@dataclass
class _RawRow:
    line: int
    image: Path
    back: str | None
    explicit_id: str | None  # the id cell, stripped; None when empty or absent
    seed: int | None
    error: str | None
    index: int  # 1-based position among the rows
    mode: Mode | None = None
    preview: Preview | None = None
    overrides: tuple[str, ...] = ()


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


def _read_stdin() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"the manifest on stdin is not UTF-8 text (invalid byte at line {line})") from exc


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


def _parse_row(line: int, fields: list[str], columns: dict[str, int], width: int, base: Path,
               defaults: RowDefaults) -> _RawRow:
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
    mode = _parse_choice(Mode, "mode", cell("mode"), errors)
    preview = _parse_choice(Preview, "preview", cell("preview"), errors)
    overrides = _parse_overrides(cell("overrides"), errors)
    id_cell = cell("id")
    back = cell("back")
    raw = _RawRow(line=line, image=image, back=back if back is not None else defaults.back,
                  explicit_id=id_cell.strip() if id_cell is not None else None,
                  seed=seed if seed_cell is not None else defaults.seed, error="; ".join(errors) if errors else None,
                  index=0, mode=mode, preview=preview, overrides=overrides)
    _draw_seed_for_template(raw, defaults)
    return raw


def _parse_choice(kind: type[Mode] | type[Preview], column: str, text: str | None, errors: list[str]):
    if text is None:
        return None
    try:
        return kind(text.strip())
    except ValueError:
        errors.append(f"{column} {text.strip()!r} is not one of {', '.join(kind.values())}")
        return None


def _parse_overrides(text: str | None, errors: list[str]) -> tuple[str, ...]:
    """`key=value key2="two words"` -> ("key=value", "key2=two words"); problems go to `errors`."""
    if text is None:
        return ()
    try:
        parts = shlex.split(text)
    except ValueError as exc:
        errors.append(f"overrides {text.strip()!r} cannot be split ({exc})")
        return ()
    bad = [part for part in parts if "=" not in part or part.startswith("=")]
    if bad:
        errors.append(f"override {bad[0]!r} is not key=value")
        return ()
    return tuple(parts)


def _draw_seed_for_template(raw: _RawRow, defaults: RowDefaults) -> None:
    """An id made from `{seed}` must name the seed that runs: draw it now when none is given."""
    if raw.seed is None and raw.error is None and defaults.id_template.uses_seed:
        raw.seed = secrets.randbelow(2**31)


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


def _assign_ids(raw_rows: list[_RawRow], defaults: RowDefaults) -> list[ManifestRow]:
    """Explicit ids are claimed first (the first row keeps a repeated one); a derived id that an earlier row (or
    an explicit id) already has fails its row: two inputs must never write one folder."""
    taken: dict[str, int] = {}  # casefolded id -> line of the row that has it
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
            taken[ident.casefold()] = raw.line
    for i, raw in enumerate(raw_rows):
        if raw.explicit_id is not None or not raw.image.name:
            ids.setdefault(i, None)
            continue
        name = defaults.id_template.render(raw.image, raw.index or i + 1, raw.seed,
                                           raw.mode.value if raw.mode is not None else defaults.mode)
        ident = safe_id(name)
        if ident is None:
            ids[i] = None
            errors[i].insert(0, f"image {raw.image.name!r} gives the unsafe id {name!r}; add an 'id' cell or "
                                "change --id-template")
        elif ident.casefold() in taken:
            ids[i] = None
            errors[i].insert(0, f"{raw.image} maps to the id {ident!r} of the row at line {taken[ident.casefold()]}: "
                                "two inputs cannot share one asset folder; add an 'id' cell or use an "
                                "--id-template that tells them apart (e.g. '{parent}_{stem}')")
        else:
            ids[i] = ident
            taken[ident.casefold()] = raw.line
    return [ManifestRow(line=raw.line, image=raw.image, back=raw.back, id=ids[i], seed=raw.seed,
                        error="; ".join(errors[i]) if errors[i] else None, mode=raw.mode, preview=raw.preview,
                        overrides=raw.overrides)
            for i, raw in enumerate(raw_rows)]
