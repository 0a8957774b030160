"""Signs that a model-free (threshold) mask cut the object wrong, as warnings to log and record in metadata.json.

The threshold remover assumes one object on a plain backdrop. Typical product shots break that in recognisable
ways: the object runs off the frame (or the backdrop is not plain and everything became "object"), the mask falls
apart into many pieces, a soft grey shadow under the object is kept as a separate blob, or almost nothing is left.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BORDER_FRACTION = 0.02  # foreground on more than this fraction of the border ring = "touches the border"
MAX_PARTS = 3  # more separate foreground parts than this = "many components"
PART_FRACTION = 0.02  # parts smaller than this fraction of the largest are ignored (specks)
LOW_FOREGROUND = 0.01  # foreground below this fraction of the image = "very low foreground"
GREY_SATURATION = 0.12  # HSV saturation below which a part counts as grey
HINT = "check input.png; an RGBA photo or preprocess.background=birefnet gives a reliable mask"


def mask_warnings(alpha: np.ndarray, rgb: np.ndarray, *, name: str = "input image") -> list[str]:
    """Warnings about a mask, [] when it looks like one whole object inside the frame.

    Args:
        alpha: (H, W) uint8 mask, 255 = object.
        rgb: (H, W, 3) uint8 image the mask was made from.
    """
    foreground = alpha > 127
    warnings = []
    fraction = float(foreground.mean())
    if 0 < fraction < LOW_FOREGROUND:
        warnings.append(f"{name}: the mask keeps only {100 * fraction:.2f}% of the image; the object may have been "
                        f"cut away with the background ({HINT})")
    ring = np.zeros_like(foreground)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    on_border = float(foreground[ring].mean())
    if on_border > BORDER_FRACTION:
        warnings.append(f"{name}: the mask touches the image border ({100 * on_border:.0f}% of it); the object may "
                        f"be cut off, or the backdrop was not plain enough to remove ({HINT})")
    labels, count = ndimage.label(foreground)
    if count == 0:
        return warnings
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]  # (count,)
    parts = [index + 1 for index in np.flatnonzero(sizes >= PART_FRACTION * sizes.max())]
    if len(parts) > MAX_PARTS:
        warnings.append(f"{name}: the mask has {len(parts)} separate parts; the background may be cluttered or "
                        f"the object split ({HINT})")
    main = int(np.argmax(sizes)) + 1
    boxes = ndimage.find_objects(labels)
    main_box = boxes[main - 1]
    for part in parts:
        if part == main:
            continue
        box = boxes[part - 1]
        below = box[0].start >= main_box[0].start + 0.5 * (main_box[0].stop - main_box[0].start)
        overlaps = box[1].start < main_box[1].stop and box[1].stop > main_box[1].start
        if below and overlaps and _is_grey(rgb[labels == part]):
            warnings.append(f"{name}: a detached grey region under the object was kept in the mask (a shadow or "
                            f"a stand?); it becomes part of the 3D asset ({HINT})")
            break
    return warnings


def _is_grey(pixels: np.ndarray) -> bool:
    """(N, 3) uint8 pixels are, on average, unsaturated."""
    values = pixels.astype(np.float32) / 255.0
    high, low = values.max(axis=1), values.min(axis=1)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)
    return float(np.median(saturation)) < GREY_SATURATION


__all__ = ["mask_warnings"]
