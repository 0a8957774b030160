"""Mipmapped bilinear texture lookups at many UVs at once (REPEAT wrap, as glTF's default sampler).

A voxel averages the texture over the texels it covers: each lookup names a mip level (log2 of texels per voxel,
as TRELLIS.2's o-voxel toolkit picks it) and is interpolated bilinearly in the two nearest levels, then linearly
between them. Level k is the texture shrunk by 2^k with an area filter.
"""

from __future__ import annotations

import cv2
import numpy as np


class TexturePyramid:
    """Mip levels of one texture.

    Args:
        image: (H, W, C) uint8, row 0 = the top of the image (v = 1).
    """

    def __init__(self, image: np.ndarray):
        if image.ndim != 3:
            raise ValueError(f"image must have shape (H, W, C), got {image.shape}")
        levels = [np.ascontiguousarray(image)]
        while max(levels[-1].shape[:2]) > 1:
            h, w = levels[-1].shape[:2]
            size = (max(1, w // 2), max(1, h // 2))
            level = cv2.resize(levels[-1], size, interpolation=cv2.INTER_AREA)
            levels.append(level.reshape(size[1], size[0], image.shape[2]))
        self.levels = levels
        self.side = max(image.shape[:2])  # texels per UV unit that level 0 holds (longer side)

    def sample(self, uv: np.ndarray, level: np.ndarray) -> np.ndarray:
        """(P, 2) UVs (OpenGL convention) and (P,) fractional mip levels -> (P, C) float32 in [0, 1]."""
        level = np.clip(np.nan_to_num(level, nan=0.0), 0.0, len(self.levels) - 1)
        low = np.floor(level).astype(np.int64)
        frac = (level - low).astype(np.float32)[:, None]
        out = np.empty((uv.shape[0], self.levels[0].shape[2]), dtype=np.float32)
        for k in np.unique(low):
            rows = np.flatnonzero(low == k)
            value = _bilinear(self.levels[k], uv[rows])
            blend = rows[frac[rows, 0] > 0]  # magnified lookups (level clamped to 0) need no second level
            if k + 1 < len(self.levels) and blend.size:
                upper = _bilinear(self.levels[k + 1], uv[blend])
                value[frac[rows, 0] > 0] += (upper - value[frac[rows, 0] > 0]) * frac[blend]
            out[rows] = value
        return out / 255.0


def mip_level(uv_per_voxel: np.ndarray, side: int) -> np.ndarray:
    """Mip level at which one texel spans one voxel: log2(texels per voxel), at least 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.log2(uv_per_voxel * side)
    return np.where(np.isfinite(level), np.maximum(level, 0.0), 0.0)


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 at (P, 2) UVs, texel centres at (i + 0.5) / W, REPEAT wrap -> (P, C) float32 in [0, 255].

    OpenCV's remap does the interpolation (1/32-texel weights, results rounded to bytes)."""
    h, w = image.shape[:2]
    x = (uv[:, 0] * w - 0.5).astype(np.float32)
    y = ((1.0 - uv[:, 1]) * h - 0.5).astype(np.float32)
    n = x.shape[0]
    cols = min(max(n, 1), _REMAP_COLS)
    rows = -(-n // cols)
    pad = rows * cols - n
    if pad:
        x, y = np.pad(x, (0, pad)), np.pad(y, (0, pad))
    # wrap far-away UVs first: remap's coordinates must stay well inside int16 fixed point
    x = np.mod(x + 0.5, w) - 0.5
    y = np.mod(y + 0.5, h) - 0.5
    out = cv2.remap(image, x.reshape(rows, cols), y.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_WRAP)
    return out.reshape(rows * cols, -1)[:n].astype(np.float32)


_REMAP_COLS = 4096  # remap takes a 2-D map; long lists of points are folded into rows of this many


__all__ = ["TexturePyramid", "mip_level"]
