"""TRELLIS.2's geometric preprocessing: downscale, square crop around the object, premultiply onto black."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..config import PreprocessConfig
from ..errors import InputError


def downscale(image: Image.Image, max_side: int) -> Image.Image:
    """Shrink (LANCZOS, aspect kept) so the longer side is at most `max_side`; smaller images are untouched.

    RGBA is resampled premultiplied by PIL, so transparent pixels do not bleed colour into the edge.
    """
    width, height = image.size
    scale = max_side / max(width, height)
    if scale >= 1.0:
        return image
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


_EMPTY = {
    "alpha": "the image is fully transparent",
    "threshold": "the whole image matches its background colour",
    "birefnet": "BiRefNet found no object",
}


def crop_box(alpha: np.ndarray, cfg: PreprocessConfig, *, name: str = "input image",
             mask_source: str = "alpha") -> tuple[int, int, int, int]:
    """Square box (left, top, right, bottom) centred on the object's bounding box.

    The bounding box holds the pixels with alpha > `alpha_cutoff`·255; the side is max(bbox w, bbox h) with
    w = x_max − x_min as TRELLIS.2 computes it, and the centre's half-pixel is rounded like PIL's crop does.
    The box may reach past the image border.

    Args:
        alpha: (H, W) uint8.
        mask_source: where the alpha came from, for the error message.

    Raises:
        InputError: no pixel above the cutoff, or fewer than `min_foreground` of all pixels.
    """
    solid = alpha > cfg.alpha_cutoff * 255
    count = int(np.count_nonzero(solid))
    if count == 0 or count < cfg.min_foreground * alpha.size:
        what = _EMPTY.get(mask_source, "the mask is empty") if not alpha.any() else (
            f"{count} of {alpha.size} pixels have alpha > {cfg.alpha_cutoff:g}, fewer than "
            f"preprocess.min_foreground={cfg.min_foreground:g} of the image")
        raise InputError(f"{name}: no foreground found ({what}); pass an image with an alpha mask or a plain "
                         "background")
    rows = np.flatnonzero(solid.any(axis=1))
    cols = np.flatnonzero(solid.any(axis=0))
    x0, x1, y0, y1 = cols[0], cols[-1], rows[0], rows[-1]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(int(max(x1 - x0, y1 - y0)) // 2, 1)  # at least one pixel for a one-pixel object
    return tuple(int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))  # type: ignore[return-value]


def square_crop(
    rgba: Image.Image, cfg: PreprocessConfig, *, name: str = "input image", mask_source: str = "alpha"
) -> tuple[Image.Image, Image.Image, tuple[int, int, int, int]]:
    """Crop the object square and premultiply it onto black.

    Args:
        rgba: "RGBA" image whose alpha is the object mask.

    Returns:
        (RGB premultiplied crop, RGBA crop, box). Both crops are S×S; parts of the box outside the image are
        transparent black.
    """
    box = crop_box(np.asarray(rgba.getchannel("A")), cfg, name=name, mask_source=mask_source)
    cropped = rgba.crop(box)
    return premultiply_on_black(cropped), cropped, box


def premultiply_on_black(rgba: Image.Image) -> Image.Image:
    """An "RGBA" image's colour premultiplied by its alpha, as "RGB" (what the models see of a prepared crop)."""
    pixels = np.asarray(rgba.convert("RGBA"), dtype=np.float32) / 255.0  # (H, W, 4)
    premultiplied = pixels[:, :, :3] * pixels[:, :, 3:4]
    # Truncation (not rounding) to uint8, as TRELLIS.2 does.
    return Image.fromarray((premultiplied * 255.0).astype(np.uint8), mode="RGB")
