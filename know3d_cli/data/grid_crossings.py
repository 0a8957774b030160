"""Where triangles cross the edges of a voxel grid: the scan that both O-Voxel passes start from.

Grid lines run parallel to each axis `a` through the integer points of the two other axes (b, c) = ((a+1) % 3,
(a+2) % 3), in voxel units (a point p of the normalised asset sits at `(p + 0.5) * R`). A triangle crosses the line
(b = j, c = k) where its projection onto the (b, c) plane covers the lattice point (j, k). The crossed primal edge
is owned by voxel (a: floor(p_a), b: j - 1, c: k - 1), whose maximum corner lies on the line; the four voxels
around the edge are the owner and its +1 neighbours in b, in c and in both (TRELLIS.2's o-voxel scan does the same
with a scan-line loop per triangle).

Lattice points exactly on a projected triangle edge follow the top-left fill rule of rasterisers, evaluated in a
canonical vertex order, so a watertight mesh crosses each line exactly once where two of its triangles meet.
Everything is vectorised per chunk of triangles: the candidate lattice points of a triangle's projected bounding
box are enumerated with `repeat_interleave`, and a chunk holds at most `chunk_size` candidates per axis (a single
larger triangle gets a chunk of its own).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EdgeCrossings:
    triangle: torch.Tensor  # (K,) int64 index of the crossing triangle
    axis: torch.Tensor  # (K,) int64 direction (0 x, 1 y, 2 z) of the crossed edge
    owner: torch.Tensor  # (K, 3) int64 voxel owning the crossed edge; its neighbours may fall outside the grid
    point: torch.Tensor  # (K, 3) float64 crossing point, voxel units


def edge_crossings(triangles: torch.Tensor, resolution: int, chunk_size: int) -> Iterator[EdgeCrossings]:
    """Yield the crossings of `triangles` with the grid, chunk by chunk.

    Every chunk covers a contiguous range of triangles on all three axes, so all crossings of one triangle arrive
    in one chunk.

    Args:
        triangles: (T, 3, 3) float64 corners in voxel units.
        resolution: grid side R; lines outside [0, R] are skipped, crossings outside [0, R) along the line too.
        chunk_size: candidate lattice points per axis and chunk (memory bound).
    """
    counts = torch.stack([_candidate_count(triangles, axis, resolution) for axis in range(3)])  # (3, T)
    worst = counts.max(dim=0).values
    for start, stop in chunk_ranges(worst, chunk_size):
        parts = [_crossings_on_axis(triangles, start, stop, axis, counts[axis, start:stop], resolution)
                 for axis in range(3)]
        yield EdgeCrossings(*(torch.cat([getattr(p, f) for p in parts]) for f in ("triangle", "axis", "owner",
                                                                               "point")))


# The four voxels around an edge along each axis, relative to its owner; row 0 is the owner.
_AROUND_EDGE = torch.tensor(
    [
        [[0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]],  # x-edge: neighbours in y and z
        [[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 1]],  # y-edge: neighbours in z and x
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]],  # z-edge: neighbours in x and y
    ],
    dtype=torch.int64,
)


def crossing_voxels(crossings: EdgeCrossings, resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The voxels around each crossed edge that lie in the grid.

    Returns:
        crossing: (E,) int64 row in `crossings`; voxel: (E, 3) int64; is_owner: (E,) bool (the edge's owner).
    """
    voxel = crossings.owner[:, None, :] + _AROUND_EDGE[crossings.axis]  # (K, 4, 3)
    inside = ((voxel >= 0) & (voxel < resolution)).all(dim=2)
    crossing = torch.arange(voxel.shape[0])[:, None].expand(-1, 4)[inside]
    is_owner = torch.zeros(voxel.shape[:2], dtype=torch.bool)
    is_owner[:, 0] = True
    return crossing, voxel[inside], is_owner[inside]


def voxel_keys(voxel: torch.Tensor, resolution: int) -> torch.Tensor:
    """(..., 3) int voxel coordinates in [0, R) -> (...,) int64 keys (x * R + y) * R + z (lexicographic order)."""
    v = voxel.to(torch.int64)
    return (v[..., 0] * resolution + v[..., 1]) * resolution + v[..., 2]


def key_voxels(keys: torch.Tensor, resolution: int) -> torch.Tensor:
    """Inverse of `voxel_keys`: (N,) int64 -> (N, 3) int64."""
    return torch.stack([keys // (resolution * resolution), (keys // resolution) % resolution, keys % resolution],
                       dim=1)


def _lattice_box(triangles: torch.Tensor, axis: int, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, 2) lowest and highest lattice point (b, c) of each triangle's projected bounding box, clamped to [0, R]."""
    plane = triangles[:, :, [(axis + 1) % 3, (axis + 2) % 3]]  # (T, 3, 2)
    low = torch.ceil(plane.min(dim=1).values).clamp(min=0).to(torch.int64)
    high = torch.floor(plane.max(dim=1).values).clamp(max=resolution).to(torch.int64)
    return low, high


def _candidate_count(triangles: torch.Tensor, axis: int, resolution: int) -> torch.Tensor:
    low, high = _lattice_box(triangles, axis, resolution)
    size = (high - low + 1).clamp(min=0)
    return size[:, 0] * size[:, 1]


def chunk_ranges(counts: torch.Tensor, chunk_size: int) -> Iterator[tuple[int, int]]:
    """Contiguous [start, stop) ranges whose summed counts stay within chunk_size (or hold one triangle)."""
    total = torch.cumsum(counts, dim=0)
    start, n = 0, counts.numel()
    while start < n:
        base = int(total[start - 1]) if start else 0
        stop = int(torch.searchsorted(total, base + chunk_size, right=True))
        stop = min(max(stop, start + 1), n)
        yield start, stop
        start = stop


def _crossings_on_axis(
    triangles: torch.Tensor, start: int, stop: int, axis: int, counts: torch.Tensor, resolution: int
) -> EdgeCrossings:
    b, c = (axis + 1) % 3, (axis + 2) % 3
    tri = triangles[start:stop]
    low, high = _lattice_box(tri, axis, resolution)
    width = (high[:, 1] - low[:, 1] + 1).clamp(min=1)
    which = torch.repeat_interleave(torch.arange(tri.shape[0]), counts)  # (N,) local triangle of each candidate
    first = torch.cumsum(counts, dim=0) - counts
    local = torch.arange(which.numel()) - first[which]
    lattice = torch.stack([low[which, 0] + local // width[which], low[which, 1] + local % width[which]], dim=1)

    corners = tri[which]  # (N, 3, 3)
    flat = corners[:, :, [b, c]]  # (N, 3, 2)
    q = lattice.to(torch.float64)
    # weight of vertex i = edge function of the opposite edge (i+1 -> i+2), so p = sum_i w_i v_i / sum_i w_i
    weights = torch.stack([_edge_function(flat[:, (i + 1) % 3], flat[:, (i + 2) % 3], q) for i in range(3)], dim=1)
    area = weights.sum(dim=1)  # twice the signed projected area (constant per triangle)
    sign = torch.sign(area)[:, None]
    oriented = weights * sign  # counter-clockwise: inside means every weight >= 0
    on_edge = oriented == 0
    top_left = torch.stack([_top_left(flat[:, (i + 1) % 3], flat[:, (i + 2) % 3], sign[:, 0]) for i in range(3)],
                           dim=1)
    inside = ((oriented > 0) | (on_edge & top_left)).all(dim=1) & (area != 0)

    weights, corners, lattice = weights[inside], corners[inside], lattice[inside]
    along = (weights * corners[:, :, axis]).sum(dim=1) / weights.sum(dim=1)
    cell = torch.floor(along).to(torch.int64)
    valid = (cell >= 0) & (cell < resolution)
    owner = torch.empty((int(valid.sum()), 3), dtype=torch.int64)
    owner[:, axis] = cell[valid]
    owner[:, b] = lattice[valid, 0] - 1
    owner[:, c] = lattice[valid, 1] - 1
    point = torch.empty((owner.shape[0], 3), dtype=torch.float64)
    point[:, axis] = along[valid]
    point[:, b] = lattice[valid, 0].to(torch.float64)
    point[:, c] = lattice[valid, 1].to(torch.float64)
    triangle = (which[inside][valid] + start).to(torch.int64)
    return EdgeCrossings(triangle, torch.full_like(triangle, axis), owner, point)


def _edge_function(p: torch.Tensor, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) cross((q - p), (x - p)) in 2-D, evaluated from the lexicographically smaller end so that the edge
    walked backwards gives exactly the negated value (no rounding asymmetry between neighbouring triangles)."""
    swap = (p[:, 0] > q[:, 0]) | ((p[:, 0] == q[:, 0]) & (p[:, 1] > q[:, 1]))
    lo = torch.where(swap[:, None], q, p)
    hi = torch.where(swap[:, None], p, q)
    value = (hi[:, 0] - lo[:, 0]) * (x[:, 1] - lo[:, 1]) - (hi[:, 1] - lo[:, 1]) * (x[:, 0] - lo[:, 0])
    return torch.where(swap, -value, value)


def _top_left(p: torch.Tensor, q: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """(N,) bool: is edge p -> q a left or top edge of its triangle once the triangle is made counter-clockwise?"""
    d = (q - p) * sign[:, None]  # a clockwise triangle walks its edges backwards
    return (d[:, 1] < 0) | ((d[:, 1] == 0) & (d[:, 0] < 0))


__all__ = ["EdgeCrossings", "chunk_ranges", "crossing_voxels", "edge_crossings", "key_voxels", "voxel_keys"]
