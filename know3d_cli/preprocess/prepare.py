"""Photo file -> the square, premultiplied object image that conditions the editor and TRELLIS.2 (spec §1.3)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import PreprocessConfig
from .background import BiRefNetMasker, remove_background
from .crop import downscale, square_crop
from .load import decode_image, read_input
from .mask_check import mask_warnings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedImage:
    path: Path  # the input file as given
    sha256: str  # hex digest of the file's bytes
    image: Image.Image  # "RGB" S×S crop, premultiplied by alpha (black background): the model input
    rgba: Image.Image  # "RGBA" S×S crop with the mask as alpha (saved as input.png)
    mask_source: str  # "alpha" | "threshold" | "birefnet"
    original_size: tuple[int, int]  # (W, H) of the decoded, EXIF-rotated file
    working_size: tuple[int, int]  # (W, H) after the downscale to `max_side`; crop_box is in these pixels
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom), may reach past the image border
    warnings: tuple[str, ...] = ()  # problems worth recording (e.g. an animated file's first frame was used)
    mask_warnings: tuple[str, ...] = ()  # signs that a threshold mask is wrong (also in `warnings`)


def prepare_image(
    path: Path,
    cfg: PreprocessConfig,
    birefnet_path: Path | None = None,
    *,
    birefnet: BiRefNetMasker | None = None,
) -> PreparedImage:
    """Load, mask and crop one photo exactly as TRELLIS.2's `preprocess_image` does.

    Order: alpha check on the full image, LANCZOS downscale to `cfg.max_side`, background removal (unless the
    alpha is used), square crop around alpha > `cfg.alpha_cutoff`, premultiply.

    Args:
        path: image file.
        cfg: preprocessing section of the config.
        birefnet_path: local BiRefNet directory, used when `cfg.background == "birefnet"`.
        birefnet: an already loaded masker to reuse across images (takes precedence over `birefnet_path`).

    Raises:
        InputError: unreadable/unsupported file, or no foreground.
        ModelMissingError: BiRefNet requested but its directory is missing.
    """
    path = Path(path)
    name = str(path)
    data = read_input(path, cfg)
    sha256 = hashlib.sha256(data).hexdigest()  # of the very bytes decoded: a file replaced meanwhile cannot mismatch
    warnings: list[str] = []
    loaded = decode_image(data, path, cfg, warnings)
    del data
    working = downscale(loaded, cfg.max_side)
    masked, source = remove_background(working, cfg, birefnet=birefnet, birefnet_path=birefnet_path, name=name)
    checks: list[str] = []
    if source == "threshold":
        rgba_array = np.asarray(masked)
        checks = mask_warnings(rgba_array[..., 3], rgba_array[..., :3], name=name)
        for message in checks:
            logger.warning("%s", message)
        warnings += checks
    image, rgba, box = square_crop(masked, cfg, name=name, mask_source=source)
    logger.debug("%s: %dx%d -> %dx%d, mask %s, crop %s", name, *loaded.size, *working.size, source, box)
    return PreparedImage(
        path=path,
        sha256=sha256,
        image=image,
        rgba=rgba,
        mask_source=source,
        original_size=loaded.size,
        working_size=working.size,
        crop_box=box,
        warnings=tuple(warnings),
        mask_warnings=tuple(checks),
    )
