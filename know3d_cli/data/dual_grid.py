"""Triangle mesh -> flexible dual grid (the geometry half of an O-Voxel), clean-room and CPU-only.

The active voxels are the four around every grid edge the surface crosses (`grid_crossings`). A voxel owning a
crossed edge (the edge through its maximum corner, see `know3d_cli.trellis2.mesh.dual_grid`) gets that axis's flag.
Its dual vertex minimises, inside the voxel, a quadratic error built as in TRELLIS.2's o-voxel toolkit:

- the plane of the crossing triangle, once per crossing of any of the voxel's edges it takes part in;
- `face_weight` x the plane of every triangle overlapping the voxel;
- `boundary_weight` x the squared distance to every open-boundary edge passing through the voxel (edges used by
  one triangle only, after merging vertices at equal positions, so UV seams are not boundaries);
- `regularization_weight` x (number of crossings) x the squared distance to the mean crossing point.

The active voxels are known before any sum (their sorted keys), so every term is added straight into per-voxel
arrays, chunk by chunk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..config import OVoxelConfig
from .grid_crossings import ActiveVoxels, EdgeCrossings, key_voxels, voxel_keys
from .qef import line_qef, minimize_in_unit_box, plane_qef, point_qef, translate_qef
from .sorted_keys import add_by_group, group_chunks, group_starts, lookup
from .voxel_traversal import segment_voxels, triangle_voxel_overlaps

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DualGrid:
    resolution: int  # grid side R; voxel (i, j, k) spans [i, i+1] x [j, j+1] x [k, k+1] in voxel units
    coords: torch.Tensor  # (N, 3) int32 (x, y, z), unique, lexicographic (x slowest)
    offsets: torch.Tensor  # (N, 3) float32 dual vertex minus coords, voxel units, in [0, 1]
    intersected: torch.Tensor  # (N, 3) bool: the surface crosses the voxel's x / y / z edge through its max corner


def build_dual_grid(
    triangles: torch.Tensor,
    crossings: EdgeCrossings,
    active: ActiveVoxels,
    segments: np.ndarray,
    cfg: OVoxelConfig,
) -> DualGrid:
    """Solve the dual vertices and set the edge flags of the active voxels.

    Args:
        triangles: (T, 3, 3) float64 corners in voxel units.
        crossings: their edge crossings; active: the voxels around them.
        segments: (S, 2, 3) float64 open-boundary edges in voxel units.
        cfg: QEF weights and the chunk size.
    """
    r, n = cfg.resolution, active.keys.shape[0]
    tri_np = triangles.numpy()
    normal = np.cross(tri_np[:, 1] - tri_np[:, 0], tri_np[:, 2] - tri_np[:, 0])
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.divide(normal, length, out=np.zeros_like(normal), where=length > 0)
    offset = -(normal * tri_np[:, 0]).sum(axis=1)  # plane: n.x + offset = 0
    planes = plane_qef(torch.from_numpy(normal), torch.from_numpy(offset)).numpy()  # (T, 10), grid frame

    # sums in the grid frame (float64: moving them into each voxel's frame cancels large terms)
    sums = np.zeros((n, 14), dtype=np.float64)  # crossings, their summed points (3), QEF (10)
    flags = np.zeros((n, 3), dtype=bool)
    triangle = crossings.triangle.numpy()
    axis = crossings.axis.numpy().astype(np.int64)
    for part in group_chunks(active.row, cfg.chunk_size):
        rows, entry = active.row[part], active.entry[part]
        c = entry // 4
        values = np.empty((c.shape[0], 14), dtype=np.float64)
        values[:, 0] = 1.0
        values[:, 1:4] = crossings.points(torch.from_numpy(c)).numpy()
        values[:, 4:] = planes[triangle[c]]
        add_by_group(sums, rows, values)
        is_owner = entry % 4 == 0
        flags[rows[is_owner], axis[c[is_owner]]] = True
    qef = sums[:, 4:]
    if cfg.face_weight > 0:
        for tri, keys in triangle_voxel_overlaps(triangles, r, cfg.chunk_size):
            order, rows, found = lookup(active.keys, keys.numpy())
            add_by_group(qef, rows[found], cfg.face_weight * planes[tri.numpy()[order[found]]])
    segments = segments[np.linalg.norm(segments[:, 1] - segments[:, 0], axis=1) > 1e-6]  # no direction otherwise
    if cfg.boundary_weight > 0 and segments.shape[0]:
        seg, voxel = segment_voxels(torch.from_numpy(segments), r)
        order, rows, found = lookup(active.keys, voxel_keys(voxel.numpy(), r))
        seg = seg.numpy()[order[found]]
        start_point, direction = segments[seg, 0], segments[seg, 1] - segments[seg, 0]
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        lines = line_qef(torch.from_numpy(start_point), torch.from_numpy(direction)).numpy()
        add_by_group(qef, rows[found], cfg.boundary_weight * lines)

    offsets = torch.empty((n, 3), dtype=torch.float32)
    for start in range(0, n, cfg.chunk_size):
        part = slice(start, start + cfg.chunk_size)
        corner = torch.from_numpy(key_voxels(active.keys[part], r).astype(np.float64))
        count = torch.from_numpy(sums[part, 0])[:, None]
        local = translate_qef(torch.from_numpy(qef[part]), corner)
        mean = torch.from_numpy(sums[part, 1:4]) / count - corner
        local += cfg.regularization_weight * count * point_qef(mean)
        offsets[part] = minimize_in_unit_box(local).to(torch.float32)
    coords = torch.from_numpy(key_voxels(active.keys, r).astype(np.int32))
    logger.debug("dual grid %d^3: %d voxels", r, n)
    return DualGrid(r, coords, offsets.clamp_(0, 1), torch.from_numpy(flags))


def boundary_segments(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(S, 2, 3) endpoints of the edges used by exactly one face, vertices merged at equal positions first.

    Edges between vertices at equal positions are dropped.
    """
    order = np.lexsort(vertices.T[::-1])
    sorted_v = vertices[order]
    new = np.concatenate([[True], (sorted_v[1:] != sorted_v[:-1]).any(axis=1)])
    merged = np.empty(vertices.shape[0], dtype=np.int64)
    merged[order] = np.cumsum(new) - 1
    position = sorted_v[new]
    f = merged[faces]
    lo = np.minimum(f, np.roll(f, -1, axis=1)).reshape(-1)  # edges (0,1), (1,2), (2,0)
    hi = np.maximum(f, np.roll(f, -1, axis=1)).reshape(-1)
    key = lo[lo != hi] * position.shape[0] + hi[lo != hi]
    key.sort()
    starts = group_starts(key)
    runs = np.diff(np.append(starts, key.shape[0]))
    once = key[starts[runs == 1]]
    return np.stack([position[once // position.shape[0]], position[once % position.shape[0]]], axis=1)


__all__ = ["DualGrid", "boundary_segments", "build_dual_grid"]
