"""Open an input photo safely: one clear `InputError` per kind of bad file, EXIF orientation, 8-bit RGB(A) out."""

from __future__ import annotations

import hashlib
import logging
import struct
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..config import PreprocessConfig
from ..errors import InputError

logger = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_HINT = "pass a PNG, JPEG, WebP, TIFF, BMP or GIF photo"


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except PermissionError as exc:
        raise InputError(f"cannot read input image {path}: permission denied") from exc
    except OSError as exc:
        raise InputError(f"cannot read input image {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def load_image(path: Path, cfg: PreprocessConfig) -> Image.Image:
    """Decode an image file fully into memory.

    EXIF orientation is applied. The result is mode "RGBA" when the source carries an alpha channel (or a
    transparency key), "RGB" otherwise; 16-bit sources are scaled to 8 bits, CMYK/YCbCr/palette are converted.

    Raises:
        InputError: missing, a directory, unreadable, not a (supported) image, zero-sized, larger than
            `cfg.max_pixels`, truncated or corrupt. The one-line message names the path and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input image not found: {path}")
    if path.is_dir():
        raise InputError(f"input image {path} is a directory, not an image file")
    try:
        fh = path.open("rb")
    except PermissionError as exc:
        raise InputError(f"cannot read input image {path}: permission denied") from exc
    except OSError as exc:
        raise InputError(f"cannot read input image {path}: {exc.strerror or exc}") from exc
    with fh:
        im = _open(fh, path, cfg)
        with im:
            _check_size(im.size, path, cfg)
            try:
                with _strict_decoding():
                    im.load()  # full decode now, so truncation and corruption surface here
            except Image.DecompressionBombError as exc:
                detail = str(exc).split(", could be")[0]
                raise InputError(f"input image {path} is too large: {detail}; downscale it first") from exc
            except Exception as exc:  # any decoder failure means a broken file
                raise InputError(f"input image {path} is truncated or corrupt ({_reason(exc)}); "
                                 "re-export or re-download it") from exc
            out = _to_rgb_or_rgba(_exif_transpose(im, path), path)
            return out.copy() if out is im else out  # closing `im` frees its pixels


def _open(fh, path: Path, cfg: PreprocessConfig) -> Image.Image:
    """`Image.open` (header only) with PIL's bomb check turned into an `InputError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(fh)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        detail = str(exc).split(", could be")[0]  # "Image size (N pixels) exceeds limit of M pixels"
        raise InputError(f"input image {path} is too large: {detail}; downscale it first "
                         f"(preprocess.max_pixels={cfg.max_pixels})") from exc
    except UnidentifiedImageError as exc:
        size = _sniff_size(fh)
        if size is not None and 0 in size:
            raise InputError(f"input image {path} has zero size ({size[0]}x{size[1]} pixels)") from exc
        raise InputError(f"input image {path} is not an image or its format is not supported; {_HINT}") from exc
    except Exception as exc:  # a plugin choking on a malformed header
        raise InputError(f"input image {path} has a corrupt header ({_reason(exc)}); {_HINT}") from exc


def _check_size(size: tuple[int, int], path: Path, cfg: PreprocessConfig) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InputError(f"input image {path} has zero size ({width}x{height} pixels)")
    if width * height > cfg.max_pixels:
        raise InputError(
            f"input image {path} is too large: {width}x{height} = {width * height} pixels exceeds "
            f"preprocess.max_pixels={cfg.max_pixels}; downscale it first"
        )


def _sniff_size(fh) -> tuple[int, int] | None:
    """(w, h) from a PNG or GIF header, for files PIL refuses to identify (PIL rejects 0-sized images that way)."""
    try:
        fh.seek(0)
        head = fh.read(32)
    except OSError:
        return None
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    return None


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """Decode with `LOAD_TRUNCATED_IMAGES` off even if another library switched it on (restored afterwards)."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _exif_transpose(im: Image.Image, path: Path) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception as exc:  # a broken EXIF block should not cost the photo
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", path, _reason(exc))
        return im


def _to_rgb_or_rgba(im: Image.Image, path: Path) -> Image.Image:
    mode = im.mode
    if mode == "RGBA":
        return im
    if mode == "RGB":
        return im.convert("RGBA") if im.has_transparency_data else im
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return Image.fromarray(_high_depth_to_uint8(im), mode="L").convert("RGB")
    if mode in ("LA", "La", "PA", "RGBa"):
        return im.convert("RGBA")
    if mode in ("P", "L", "1", "RGBX"):
        return im.convert("RGBA" if im.has_transparency_data else "RGB")
    if mode in ("CMYK", "YCbCr", "HSV"):
        return im.convert("RGB")
    raise InputError(f"input image {path} has an unsupported pixel mode {mode!r}; {_HINT}")


def _high_depth_to_uint8(im: Image.Image) -> np.ndarray:
    """(H, W) uint8 from a 16-bit, 32-bit integer or float single-channel image, scaled (not clipped)."""
    arr = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        peak = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
        scaled = np.clip(arr / peak, 0.0, 1.0) * 255.0
    else:
        # 16-bit samples span 0..65535; mode "I" may hold wider values, which are scaled by their maximum.
        peak = max(65535.0, float(arr.max(initial=0.0)))
        scaled = np.clip(arr, 0.0, None) / peak * 255.0
    return np.rint(scaled).astype(np.uint8)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
