"""Open an input photo safely: one clear `InputError` per kind of bad file, EXIF orientation, 8-bit RGB(A) out."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
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


def max_input_bytes(cfg: PreprocessConfig) -> int:
    """The largest input file accepted: an uncompressed 16-bit RGBA image of `max_pixels`, plus headers."""
    return cfg.max_pixels * 8 + (1 << 20)


def read_input(path: Path, cfg: PreprocessConfig) -> bytes:
    """The input file's bytes, read once (decode and hash use the same bytes).

    Regular files and pipes (`/dev/stdin`) are read; a pipe nobody writes to reads as empty instead of hanging.

    Raises:
        InputError: missing, a directory, a device or terminal, unreadable, empty, or over `max_input_bytes`.
    """
    path = Path(path)
    limit = max_input_bytes(cfg)
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise InputError(f"input image not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read input image {path}: {_os_reason(exc)}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"input image {path} is a directory, not an image file")
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):  # a terminal, /dev/zero, a disk...
        raise InputError(f"input image {path} is a device or terminal, not an image file; pass a file or pipe the "
                         "image in")
    if stat.S_ISREG(info.st_mode) and info.st_size > limit:
        raise InputError(f"input image {path} is too large ({info.st_size} bytes; at most {limit} for "
                         f"preprocess.max_pixels={cfg.max_pixels}); downscale it first")
    try:
        # O_NONBLOCK: opening a FIFO without a writer must not wait; reads block again once it is open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError as exc:
        raise InputError(f"cannot read input image {path}: permission denied") from exc
    except OSError as exc:
        raise InputError(f"cannot read input image {path}: {_os_reason(exc)}") from exc
    try:
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise InputError(f"cannot read input image {path}: {_os_reason(exc)}") from exc
    finally:
        os.close(fd)
    if size == 0:
        where = "" if stat.S_ISREG(info.st_mode) else " (nothing was written to the pipe)"
        raise InputError(f"input image {path} is empty (0 bytes){where}")
    if size > limit:
        raise InputError(f"input image {path} is too large (over {limit} bytes for "
                         f"preprocess.max_pixels={cfg.max_pixels}); downscale it first")
    return b"".join(chunks)


def load_image(path: Path, cfg: PreprocessConfig) -> Image.Image:
    """Read and decode an image file (see `read_input` and `decode_image`)."""
    return decode_image(read_input(path, cfg), path, cfg)


def decode_image(data: bytes, path: Path, cfg: PreprocessConfig, warnings_out: list[str] | None = None) -> Image.Image:
    """Decode an image file's bytes fully into memory.

    EXIF orientation is applied. The result is mode "RGBA" when the source carries an alpha channel (or a
    transparency key), "RGB" otherwise; 16-bit sources are scaled to 8 bits, CMYK/YCbCr/palette are converted.
    An animated image gives its first frame, with a warning (logged and appended to `warnings_out`).

    Args:
        data: the file's bytes.
        path: where they came from (for messages).

    Raises:
        InputError: not a (supported) image, zero-sized, larger than `cfg.max_pixels`, truncated or corrupt. The
            one-line message names the path and the problem.
    """
    path = Path(path)
    with _pixel_limit(cfg.max_pixels), _decoder_warnings_logged(path), io.BytesIO(data) as fh:
        im = _open(fh, path, cfg)
        with im:
            _check_size(im.size, path, cfg)
            try:
                frames = getattr(im, "n_frames", 1)  # counting frames walks the file: damage can surface here
            except Exception as exc:
                raise InputError(f"input image {path} is truncated or corrupt ({_reason(exc)}); "
                                 "re-export or re-download it") from exc
            if frames > 1:
                message = f"{path} is animated ({frames} frames); only its first frame is used"
                logger.warning(message)
                if warnings_out is not None:
                    warnings_out.append(message)
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


@contextmanager
def _decoder_warnings_logged(path: Path) -> Iterator[None]:
    """PIL's warnings about damaged files become debug logs (the outcome is an image or one `InputError` line)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                logger.debug("%s: %s", path, warning.message)


@contextmanager
def _pixel_limit(max_pixels: int) -> Iterator[None]:
    """PIL's decompression-bomb limit set to `preprocess.max_pixels` for the block (restored afterwards)."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _open(fh, path: Path, cfg: PreprocessConfig) -> Image.Image:
    """`Image.open` (header only) with PIL's bomb error turned into an `InputError` (its warning is left to
    `_check_size`, which names the setting)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fh)
    except Image.DecompressionBombError as exc:
        detail = str(exc).split(", could be")[0]  # "Image size (N pixels) exceeds limit of M pixels"
        raise InputError(f"input image {path} is too large: {detail} (preprocess.max_pixels={cfg.max_pixels}); "
                         "downscale it first") from exc
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


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
