"""Triangle mesh -> flexible dual grid (the geometry half of an O-Voxel), clean-room and CPU-only.

The active voxels are the four around every grid edge the surface crosses (`grid_crossings`). A voxel owning a
crossed edge (the edge through its maximum corner, see `know3d_cli.trellis2.mesh.dual_grid`) gets that axis's flag.
Its dual vertex minimises, inside the voxel, a quadratic error built as in TRELLIS.2's o-voxel toolkit:

- the plane of the crossing triangle, once per crossing of any of the voxel's edges it takes part in;
- `face_weight` x the plane of every triangle overlapping the voxel;
- `boundary_weight` x the squared distance to every open-boundary edge passing through the voxel (edges used by
  one triangle only, after merging vertices at equal positions, so UV seams are not boundaries);
- `regularization_weight` x (number of crossings) x the squared distance to the mean crossing point.

Accumulation is chunked: each chunk of crossings is reduced per voxel before the next, so memory follows the
number of active voxels, not of crossings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..config import OVoxelConfig
from ..trellis2.mesh.grid_sample import VoxelIndex
from .grid_crossings import EdgeCrossings, crossing_voxels, key_voxels, voxel_keys
from .qef import line_qef, minimize_in_unit_box, plane_qef, point_qef
from .voxel_traversal import segment_voxels, triangle_voxel_overlaps

logger = logging.getLogger(__name__)

# columns of the per-voxel sums
_COUNT, _POINT, _QEF, _FLAGS = slice(0, 1), slice(1, 4), slice(4, 14), slice(14, 17)


@dataclass(frozen=True)
class DualGrid:
    resolution: int  # grid side R; voxel (i, j, k) spans [i, i+1] x [j, j+1] x [k, k+1] in voxel units
    coords: torch.Tensor  # (N, 3) int32 (x, y, z), unique, lexicographic (x slowest)
    offsets: torch.Tensor  # (N, 3) float32 dual vertex minus coords, voxel units, in [0, 1]
    intersected: torch.Tensor  # (N, 3) bool: the surface crosses the voxel's x / y / z edge through its max corner


class DualGridBuilder:
    """Accumulates crossings chunk by chunk, then adds the face and boundary terms and solves.

    Args:
        triangles: (T, 3, 3) float64 corners in voxel units.
        resolution: grid side R.
    """

    def __init__(self, triangles: torch.Tensor, resolution: int):
        self.triangles = triangles
        self.resolution = resolution
        normal = torch.linalg.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
        length = normal.norm(dim=1, keepdim=True)
        self.normal = torch.where(length > 0, normal / length.clamp(min=1e-300), torch.zeros_like(normal))
        self.offset = -(self.normal * triangles[:, 0]).sum(dim=1)  # plane: n.x + offset = 0
        self._keys: list[torch.Tensor] = []
        self._sums: list[torch.Tensor] = []

    def add(self, crossings: EdgeCrossings) -> None:
        row, voxel, is_owner = crossing_voxels(crossings, self.resolution)
        tri = crossings.triangle[row]
        corner = voxel.to(torch.float64)
        normal = self.normal[tri]
        flags = torch.zeros((row.numel(), 3), dtype=torch.float64)
        flags[is_owner, crossings.axis[row][is_owner]] = 1.0
        values = torch.cat([
            torch.ones((row.numel(), 1), dtype=torch.float64),
            crossings.point[row] - corner,
            plane_qef(normal, self.offset[tri] + (normal * corner).sum(dim=1)),
            flags,
        ], dim=1)
        keys, sums = _reduce(voxel_keys(voxel, self.resolution), values.to(torch.float32))
        self._keys.append(keys)
        self._sums.append(sums)

    def build(self, segments: torch.Tensor, cfg: OVoxelConfig) -> DualGrid:
        """Finish the grid.

        Args:
            segments: (S, 2, 3) float64 open-boundary edges in voxel units.
            cfg: QEF weights and the chunk size.
        """
        r = self.resolution
        if not self._keys:
            keys, sums = torch.zeros(0, dtype=torch.int64), torch.zeros((0, 17), dtype=torch.float32)
        else:
            keys, sums = _reduce(torch.cat(self._keys), torch.cat(self._sums))
        self._keys.clear()
        self._sums.clear()
        coords = key_voxels(keys, r)
        qef = sums[:, _QEF].to(torch.float64)
        index = VoxelIndex(coords, r)
        if cfg.face_weight > 0:
            for tri, voxel in triangle_voxel_overlaps(self.triangles, r, cfg.chunk_size):
                self._add_planes(qef, index, tri, voxel, cfg.face_weight)
        if cfg.boundary_weight > 0 and segments.shape[0]:
            self._add_lines(qef, index, segments, cfg.boundary_weight)
        count = sums[:, _COUNT].to(torch.float64)
        mean = sums[:, _POINT].to(torch.float64) / count.clamp(min=1)
        qef += cfg.regularization_weight * count * point_qef(mean)
        offsets = torch.cat([minimize_in_unit_box(qef[i:i + cfg.chunk_size])
                             for i in range(0, qef.shape[0], cfg.chunk_size)] or [torch.zeros((0, 3))])
        logger.debug("dual grid %d^3: %d voxels", r, coords.shape[0])
        return DualGrid(r, coords.to(torch.int32), offsets.to(torch.float32).clamp(0, 1), sums[:, _FLAGS] > 0)

    def _add_planes(self, qef, index, tri, voxel, weight) -> None:
        row = index.lookup(voxel)
        keep = row >= 0
        row, tri, corner = row[keep], tri[keep], voxel[keep].to(torch.float64)
        normal = self.normal[tri]
        qef.index_add_(0, row, weight * plane_qef(normal, self.offset[tri] + (normal * corner).sum(dim=1)))

    def _add_lines(self, qef, index, segments, weight) -> None:
        seg, voxel = segment_voxels(segments, self.resolution)
        row = index.lookup(voxel)
        keep = row >= 0
        row, seg, corner = row[keep], seg[keep], voxel[keep].to(torch.float64)
        direction = segments[seg, 1] - segments[seg, 0]
        direction = direction / direction.norm(dim=1, keepdim=True)
        qef.index_add_(0, row, weight * line_qef(segments[seg, 0] - corner, direction))


def boundary_segments(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(S, 2, 3) endpoints of the edges used by exactly one face, vertices merged at equal positions first.

    Zero-length edges are dropped.
    """
    _, merged = np.unique(vertices, axis=0, return_inverse=True)
    f = merged.reshape(-1)[faces]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    edges = edges[edges[:, 0] != edges[:, 1]]
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    once = unique[counts == 1]
    # any original vertex of each merged id gives the position
    position = np.empty((merged.max() + 1 if merged.size else 0, 3), dtype=vertices.dtype)
    position[merged.reshape(-1)] = vertices
    return position[once]


def _reduce(keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum rows of `values` with equal keys -> (sorted unique keys, sums)."""
    unique, inverse = torch.unique(keys, return_inverse=True)
    sums = torch.zeros((unique.numel(), values.shape[1]), dtype=values.dtype)
    sums.index_add_(0, inverse, values)
    return unique, sums


__all__ = ["DualGrid", "DualGridBuilder", "boundary_segments"]
