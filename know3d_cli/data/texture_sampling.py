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
            if k + 1 < len(self.levels):
                upper = _bilinear(self.levels[k + 1], uv[rows])
                value = value + (upper - value) * frac[rows]
            out[rows] = value
        return out / 255.0


def mip_level(uv_per_voxel: np.ndarray, side: int) -> np.ndarray:
    """Mip level at which one texel spans one voxel: log2(texels per voxel), at least 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.log2(uv_per_voxel * side)
    return np.where(np.isfinite(level), np.maximum(level, 0.0), 0.0)


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 at (P, 2) UVs, texel centres at (i + 0.5) / W, REPEAT wrap -> (P, C) float32 in [0, 255]."""
    h, w = image.shape[:2]
    x = uv[:, 0].astype(np.float64) * w - 0.5
    y = (1.0 - uv[:, 1].astype(np.float64)) * h - 0.5
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0).astype(np.float32)[:, None]
    fy = (y - y0).astype(np.float32)[:, None]
    x0 = x0.astype(np.int64) % w
    y0 = y0.astype(np.int64) % h
    x1 = (x0 + 1) % w
    y1 = (y0 + 1) % h
    top = image[y0, x0].astype(np.float32) * (1 - fx) + image[y0, x1].astype(np.float32) * fx
    bottom = image[y1, x0].astype(np.float32) * (1 - fx) + image[y1, x1].astype(np.float32) * fx
    return top * (1 - fy) + bottom * fy


__all__ = ["TexturePyramid", "mip_level"]
