"""Depth pictures of voxel occupancy: an object's silhouette and relief seen from any horizontal direction.

Used for training previews, the dataset contact sheet and benchmark figures: a cheap, dependency-free picture of
what a sparse structure or a decoded voxel set looks like from the front and from behind.

Frame: TRELLIS.2's. Voxel (i, j, k) of an R^3 grid has its centre at `(i + 0.5) / R - 0.5` along x, y, z; z is up.
A camera at azimuth `a` (degrees) sits on the horizontal direction `(sin a, cos a, 0)` (TRELLIS's yaw convention)
and looks at the origin orthographically; the picture's up is +z and its right is `forward x up`. A back view is
the camera at `a + 180`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

BACKGROUND = 0  # grey level of empty pixels
NEAREST = 255  # grey level of the nearest possible surface
FARTHEST = 64  # grey level of the farthest possible surface


def depth_map(coords: np.ndarray, resolution: int, azimuth_deg: float = 0.0) -> np.ndarray:
    """Per-pixel distance to the nearest voxel, seen from azimuth `azimuth_deg`.

    Args:
        coords: (M, 3) integer voxel indices (x, y, z) in [0, resolution).
        resolution: R, the grid side.
        azimuth_deg: camera azimuth (0 = the camera on +y, 180 = on -y).

    Returns:
        (R, R) float32: row 0 is the top (+z); 0 = nearest possible, 1 = farthest possible, NaN = no voxel.
    """
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must be (M, 3), got {coords.shape}")
    depth = np.full((resolution, resolution), np.nan, dtype=np.float32)
    if len(coords) == 0:
        return depth
    angle = math.radians(azimuth_deg)
    eye = np.array([math.sin(angle), math.cos(angle), 0.0])
    forward = -eye
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    extent = 0.5 * (abs(math.sin(angle)) + abs(math.cos(angle)))  # half-width of the rotated grid's footprint

    centres = (coords.astype(np.float64) + 0.5) / resolution - 0.5  # (M, 3)
    u = centres @ right  # (M,) in [-extent, extent]
    v = centres @ up
    d = centres @ forward  # larger = farther from the camera
    cols = np.clip(((u + extent) / (2 * extent) * resolution).astype(np.int64), 0, resolution - 1)
    rows = np.clip(((0.5 - v) * resolution).astype(np.int64), 0, resolution - 1)
    flat = np.full(resolution * resolution, np.inf)
    np.minimum.at(flat, rows * resolution + cols, (d + extent) / (2 * extent))
    hit = np.isfinite(flat)
    depth.reshape(-1)[hit] = flat[hit]
    return depth


def depth_image(coords: np.ndarray, resolution: int, azimuth_deg: float = 0.0, size: int | None = None) -> Image.Image:
    """`depth_map` as a greyscale picture: near surfaces bright, far ones dim, empty pixels black.

    Args:
        coords, resolution, azimuth_deg: as in `depth_map`.
        size: output side in pixels (nearest-neighbour scaling); None = one pixel per voxel.

    Returns:
        An "L" image of side `size` (or R).
    """
    depth = depth_map(coords, resolution, azimuth_deg)
    grey = np.full(depth.shape, BACKGROUND, dtype=np.uint8)
    hit = ~np.isnan(depth)
    grey[hit] = np.round(NEAREST - (NEAREST - FARTHEST) * depth[hit]).astype(np.uint8)
    image = Image.fromarray(grey, mode="L")
    if size is not None and size != resolution:
        image = image.resize((size, size), Image.NEAREST)
    return image


def front_and_back(coords: np.ndarray, resolution: int, front_azimuth_deg: float = 0.0,
                   size: int | None = None) -> tuple[Image.Image, Image.Image]:
    """The object seen from the front camera and from the opposite side (azimuth + 180)."""
    return (depth_image(coords, resolution, front_azimuth_deg, size),
            depth_image(coords, resolution, front_azimuth_deg + 180.0, size))


def contact_sheet(rows: Sequence[Sequence[Image.Image]], titles: Sequence[str] | None = None,
                  pad: int = 2) -> Image.Image:
    """Pictures in a grid (one list per row), on white, with optional column titles above.

    Cells take the size of the largest picture; smaller ones are centred.
    """
    cells = [image for row in rows for image in row]
    if not cells:
        raise ValueError("contact_sheet needs at least one picture")
    cell_w = max(image.width for image in cells)
    cell_h = max(image.height for image in cells)
    columns = max(len(row) for row in rows)
    title_h = 12 if titles else 0
    sheet = Image.new("RGB", (columns * (cell_w + pad) + pad, title_h + len(rows) * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for col, title in enumerate(titles or ()):
        draw.text((pad + col * (cell_w + pad), 0), str(title), fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            x = pad + c * (cell_w + pad) + (cell_w - image.width) // 2
            y = title_h + pad + r * (cell_h + pad) + (cell_h - image.height) // 2
            sheet.paste(image.convert("RGB"), (x, y))
    return sheet


__all__ = ["contact_sheet", "depth_image", "depth_map", "front_and_back"]
