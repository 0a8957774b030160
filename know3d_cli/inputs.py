"""What `know3d generate` is given on its command line: images, folders and globs, told apart from `key=value`
config overrides; and the `--id-template` that names each input's asset folder.

An argument is an input when it names an existing file or folder, or when it has no `=` (a path that does not
exist is reported as missing, a glob the shell did not expand is expanded here); otherwise it is an override.
A folder gives its images (by extension, sorted by name, not recursive).
"""

from __future__ import annotations

import glob
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
_GLOB_CHARS = set("*?[")

# --id-template fields (README "Asset ids"); each is a plain string when rendered.
ID_FIELDS = {
    "stem": "the image's file name without its extension",
    "name": "the image's file name with its extension",
    "parent": "the name of the folder that holds the image",
    "index": "the input's 1-based position (command line order, or the manifest row)",
    "seed": "the seed (a seed is drawn up front when none is given)",
    "mode": "the requested mode (auto, know3d, multiview, trellis)",
}
DEFAULT_ID_TEMPLATE = "{stem}"


def split_arguments(args: list[str]) -> tuple[list[str], list[str]]:
    """(inputs, overrides) from `generate`'s positional arguments, in their order."""
    inputs, overrides = [], []
    for arg in args:
        if "=" in arg and not Path(arg).exists():
            overrides.append(arg)
        else:
            inputs.append(arg)
    return inputs, overrides


def expand_inputs(args: list[str]) -> list[Path]:
    """The image paths that `args` name, in order; a path given twice counts once.

    Raises:
        InputError: no inputs, a glob that matches nothing, or a folder without images. A plain path that does not
            exist is kept, so that the run reports it with the other problems of that image.
    """
    if not args:
        raise InputError("no input image given: know3d generate IMAGE... --back TEXT (files, folders or globs)")
    images: list[Path] = []
    for arg in args:
        path = Path(arg).expanduser()
        if path.is_dir():
            found = _images(path.iterdir())
            if not found:
                raise InputError(f"{path} is a directory without images ({', '.join(IMAGE_SUFFIXES)})")
            images += found
        elif not path.exists() and _GLOB_CHARS & set(arg):
            found = _images(map(Path, glob.glob(str(path))))
            if not found:
                raise InputError(f"no image matches {arg!r}")
            images += found
        else:
            images.append(path)
    unique: dict[Path, Path] = {}
    for image in images:
        unique.setdefault(image.absolute(), image)
    return list(unique.values())


def _images(paths: Iterable[Path]) -> list[Path]:
    """The image files among `paths` (by extension), sorted."""
    return sorted(p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


@dataclass(frozen=True)
class IdTemplate:
    """A `str.format` template over `ID_FIELDS`, checked when made."""

    text: str = DEFAULT_ID_TEMPLATE

    def __post_init__(self) -> None:
        fields = self.fields()
        unknown = [name for name in fields if name not in ID_FIELDS]
        if unknown or not fields:
            raise UsageError(f"invalid --id-template {self.text!r}: "
                             f"{'unknown field ' + repr(unknown[0]) if unknown else 'it has no field'}; "
                             f"fields: {', '.join('{' + name + '}' for name in ID_FIELDS)}")

    def fields(self) -> list[str]:
        """The template's field names, in order (UsageError for a malformed template)."""
        try:
            return [name for _, name, _, _ in string.Formatter().parse(self.text) if name is not None]
        except ValueError as exc:
            raise UsageError(f"invalid --id-template {self.text!r}: {exc}") from exc

    @property
    def uses_seed(self) -> bool:
        return "seed" in self.fields()

    def render(self, image: Path, index: int, seed: int | None, mode: str) -> str:
        values = {"stem": image.stem, "name": image.name, "parent": image.absolute().parent.name, "index": index,
                  "seed": "random" if seed is None else seed, "mode": mode}
        try:
            return self.text.format(**values)
        except (ValueError, TypeError) as exc:  # a format spec that does not fit the value, e.g. {stem:d}
            raise UsageError(f"invalid --id-template {self.text!r}: {exc}") from exc


__all__ = ["DEFAULT_ID_TEMPLATE", "ID_FIELDS", "IMAGE_SUFFIXES", "IdTemplate", "expand_inputs", "split_arguments"]
