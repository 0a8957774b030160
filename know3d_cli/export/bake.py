"""Bake the sparse PBR voxel volume into UV textures (TRELLIS.2 `to_glb` steps 4-5, on CPU).

For every texel covered by the UV atlas: interpolate its 3D position on the decimated mesh, snap it to the
closest point of the high-resolution mesh, and sample the attribute volume trilinearly there. Empty texels next
to charts are then filled by OpenCV Telea inpainting (radius 3 for base colour, 1 for the other channels) so
bilinear filtering and mipmaps do not pull in black at seams.
"""

from __future__ import annotations

import logging
from typing import Optional

import cv2
import numpy as np
import torch

from ..geometry import Asset3D, VoxelIndex, grid_sample_3d
from .closest_point import ClosestPointQuery
from .rasterize import rasterize_triangles
from ..timing import timed
from .uv_atlas import UVAtlas

logger = logging.getLogger(__name__)


class SurfaceAttributes:
    """PBR attributes of the high-resolution surface: closest point on the mesh, then the voxel volume.

    Args:
        vertices: (V, 3) float high-resolution mesh, TRELLIS.2 frame. faces: (F, 3) int64.
        voxel_coords: (M, 3) int voxel coordinates. voxel_attrs: (M, C) float attributes.
        resolution: voxel grid side (origin -0.5, voxel size 1 / resolution).
    """

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        voxel_coords: torch.Tensor,
        voxel_attrs: torch.Tensor,
        resolution: int,
    ):
        self.surface = ClosestPointQuery(vertices, faces)
        self.coords = voxel_coords.detach().cpu().to(torch.int64)
        self.attrs = voxel_attrs.detach().cpu().to(torch.float32)
        self.resolution = int(resolution)
        self.index = VoxelIndex(self.coords, self.resolution)

    @classmethod
    def of(cls, asset: Asset3D, vertices: np.ndarray, faces: np.ndarray) -> SurfaceAttributes:
        """The attributes of a textured asset on its high-resolution mesh `vertices (V, 3)`, `faces (F, 3)`."""
        return cls(vertices, faces, asset.voxel_coords, asset.voxel_attrs, asset.resolution)

    def sample(self, points: np.ndarray, timings: Optional[dict[str, float]] = None) -> np.ndarray:
        """(N, 3) points near the surface -> (N, C) float32 attributes clamped to [0, 1]."""
        if points.shape[0] == 0:
            return np.zeros((0, self.attrs.shape[1]), dtype=np.float32)
        with timed(timings, "closest_point"):
            closest, _ = self.surface.query(points)
        with timed(timings, "grid_sample"):
            grid = (torch.from_numpy(closest) + 0.5) * self.resolution  # voxel units
            values = grid_sample_3d(self.coords, self.attrs, self.resolution, grid, index=self.index)
        return values.clamp_(0.0, 1.0).numpy()


def uv_to_pixels(uvs: np.ndarray, size: int) -> np.ndarray:
    """(N, 2) OpenGL-convention UVs -> (N, 2) pixel coordinates (x = column, y = row from the top)."""
    return np.stack([uvs[:, 0] * size, (1.0 - uvs[:, 1]) * size], axis=1)


def bake_pbr_textures(
    surface: SurfaceAttributes,
    positions: np.ndarray,
    atlas: UVAtlas,
    size: int,
    timings: Optional[dict[str, float]] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bake base colour + alpha and metallic-roughness textures.

    Args:
        surface: attribute source (high-resolution mesh + voxel volume with channels base colour 0:3, metallic 3,
            roughness 4, alpha 5).
        positions: (V', 3) float positions of the atlas vertices (decimated mesh, TRELLIS.2 frame).
        atlas: the UV atlas of that mesh.
        size: texture side S.
        timings: if given, seconds per step are added ("rasterize", "closest_point", "grid_sample", "inpaint").

    Returns:
        base_color: (S, S, 4) uint8 RGBA; metallic_roughness: (S, S, 3) uint8 with (R, G, B) = (0, roughness,
        metallic) as glTF expects. Row 0 is the top of the image.
    """
    with timed(timings, "rasterize"):
        pixels = uv_to_pixels(atlas.uvs, size)
        face_id, bary = rasterize_triangles(torch.from_numpy(pixels[atlas.faces]), size)
        face_id = face_id.numpy().reshape(-1)
        covered = face_id >= 0
        fid = face_id[covered]
        w = bary.numpy().reshape(-1, 3)[covered].astype(np.float64)
        corners = positions[atlas.faces[fid]]  # (N, 3, 3)
        points = np.einsum("nk,nkc->nc", w, corners)
    values = surface.sample(points, timings)  # (N, 6)
    logger.debug("baked %d texels (%.1f%% of the atlas)", fid.size, 100.0 * fid.size / covered.size)

    texels = np.zeros((size * size, 6), dtype=np.float32)
    texels[covered] = values
    texels = np.rint(texels * 255.0).astype(np.uint8).reshape(size, size, 6)
    empty = np.where(covered, 0, 255).astype(np.uint8).reshape(size, size)
    rgb = np.ascontiguousarray(texels[..., 0:3])
    mra = np.ascontiguousarray(texels[..., 3:6])  # metallic, roughness, alpha
    if covered.any() and not covered.all():
        with timed(timings, "inpaint"):
            rgb = cv2.inpaint(rgb, empty, 3, cv2.INPAINT_TELEA)
            mra = cv2.inpaint(mra, empty, 1, cv2.INPAINT_TELEA)
    base_color = np.concatenate([rgb, mra[..., 2:3]], axis=2)
    metallic_roughness = np.stack([np.zeros_like(mra[..., 0]), mra[..., 1], mra[..., 0]], axis=2)
    return base_color, metallic_roughness


__all__ = ["SurfaceAttributes", "bake_pbr_textures", "uv_to_pixels"]
