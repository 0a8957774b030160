"""Where triangles cross the edges of a voxel grid: the scan both O-Voxel halves start from.

Grid lines run parallel to each axis `a` through the integer points of the two other axes (b, c) = ((a+1) % 3,
(a+2) % 3), in voxel units (a point p of the normalised asset sits at `(p + 0.5) * R`). A triangle crosses the line
(b = j, c = k) where its projection onto the (b, c) plane covers the lattice point (j, k). The crossed primal edge
is owned by voxel (a: floor(p_a), b: j - 1, c: k - 1), whose maximum corner lies on the line; the four voxels
around the edge are the owner and its +1 neighbours in b, in c and in both (TRELLIS.2's o-voxel scan does the same
with a scan-line loop per triangle).

Lattice points exactly on a projected triangle edge follow the top-left fill rule of rasterisers. Each edge's
function is evaluated from coefficients computed in a canonical vertex order, so two triangles sharing an edge get
exactly opposite values and a watertight mesh crosses each line exactly once where its triangles meet.
Everything is vectorised per chunk of triangles: the candidate lattice points of a triangle's projected bounding
box are enumerated with `repeat_interleave`; a chunk holds at most `chunk_size` candidates per axis (a single
larger triangle gets a chunk of its own).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .sorted_keys import sort_with_index


@dataclass(frozen=True)
class EdgeCrossings:
    triangle: torch.Tensor  # (K,) int32 index of the crossing triangle
    axis: torch.Tensor  # (K,) int8 direction (0 x, 1 y, 2 z) of the crossed edge
    owner: torch.Tensor  # (K, 3) int32 voxel owning the crossed edge; its neighbours may fall outside the grid
    along: torch.Tensor  # (K,) float64 crossing coordinate along `axis`, voxel units (the others are owner + 1)

    @property
    def num_crossings(self) -> int:
        return int(self.triangle.shape[0])

    def points(self, rows: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        """(K', 3) float64 crossing points of the selected rows, voxel units."""
        point = self.owner[rows].to(torch.float64) + 1.0
        axis = self.axis[rows].to(torch.int64)
        point.scatter_(1, axis[:, None], self.along[rows][:, None])
        return point


# The four voxels around an edge along each axis, relative to its owner; column 0 is the owner.
AROUND_EDGE = torch.tensor(
    [
        [[0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]],  # x-edge: neighbours in y and z
        [[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 1]],  # y-edge: neighbours in z and x
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]],  # z-edge: neighbours in x and y
    ],
    dtype=torch.int64,
)


def edge_crossings(triangles: torch.Tensor, resolution: int, chunk_size: int) -> EdgeCrossings:
    """Every crossing of `triangles` with the grid lines, grouped by chunk of triangles, then by axis.

    Args:
        triangles: (T, 3, 3) float64 corners in voxel units.
        resolution: grid side R; lines outside [0, R] are skipped, crossings outside [0, R) along a line too.
        chunk_size: candidate lattice points per axis and chunk (memory bound).
    """
    tables = [_EdgeTable(triangles, axis, resolution) for axis in range(3)]
    worst = torch.stack([t.count for t in tables]).max(dim=0).values
    parts = [table.crossings(start, stop) for start, stop in chunk_ranges(worst, chunk_size) for table in tables]
    if not parts:
        parts = [tables[0].crossings(0, 0)]
    return EdgeCrossings(*(torch.cat([getattr(p, f) for p in parts]) for f in ("triangle", "axis", "owner", "along")))


@dataclass(frozen=True)
class ActiveVoxels:
    keys: np.ndarray  # (N,) int64 sorted `voxel_keys` of the voxels around every crossed edge
    entry: np.ndarray  # (E,) int32 crossing * 4 + position around its edge (0 = owner), sorted by voxel
    row: np.ndarray  # (E,) int32 row in `keys` of each entry (non-decreasing)

    @property
    def crossing(self) -> np.ndarray:
        return self.entry // 4


def active_voxels(crossings: EdgeCrossings, resolution: int, chunk_size: int = 1 << 20) -> ActiveVoxels:
    """The voxels around the crossed edges (inside the grid), and which crossings touch each."""
    keys = np.empty((crossings.num_crossings, 4), dtype=np.int64)
    around = AROUND_EDGE.numpy()
    for start in range(0, crossings.num_crossings, chunk_size):
        part = slice(start, start + chunk_size)
        voxel = crossings.owner[part].numpy().astype(np.int64)[:, None, :] + around[crossings.axis[part].numpy()]
        inside = ((voxel >= 0) & (voxel < resolution)).all(axis=2)
        keys[part] = np.where(inside, voxel_keys(voxel, resolution), resolution**3)  # outside sorts last
    sorted_keys, entry = sort_with_index(keys.reshape(-1))
    del keys
    valid = int(np.searchsorted(sorted_keys, resolution**3))
    sorted_keys, entry = sorted_keys[:valid], entry[:valid].astype(np.int32)
    new = np.empty(valid, dtype=bool)
    new[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    row = np.cumsum(new, dtype=np.int32) - 1
    return ActiveVoxels(sorted_keys[new], entry, row)


def voxel_keys(voxel: np.ndarray, resolution: int) -> np.ndarray:
    """(..., 3) int voxel coordinates in [0, R) -> (...,) int64 keys (x * R + y) * R + z (lexicographic order)."""
    v = voxel.astype(np.int64)
    return (v[..., 0] * resolution + v[..., 1]) * resolution + v[..., 2]


def key_voxels(keys: np.ndarray, resolution: int) -> np.ndarray:
    """Inverse of `voxel_keys`: (N,) int64 -> (N, 3) int64."""
    return np.stack([keys // (resolution * resolution), (keys // resolution) % resolution, keys % resolution], axis=1)


def chunk_ranges(counts: torch.Tensor, chunk_size: int) -> Iterator[tuple[int, int]]:
    """Contiguous [start, stop) ranges whose summed counts stay within chunk_size (or hold one item)."""
    total = torch.cumsum(counts, dim=0)
    start, n = 0, counts.numel()
    while start < n:
        base = int(total[start - 1]) if start else 0
        stop = int(torch.searchsorted(total, base + chunk_size, right=True))
        stop = min(max(stop, start + 1), n)
        yield start, stop
        start = stop


class _EdgeTable:
    """Per-triangle coefficients for the lines along one axis: lattice box, edge functions, plane height."""

    def __init__(self, triangles: torch.Tensor, axis: int, resolution: int):
        self.axis, self.resolution = axis, resolution
        b, c = (axis + 1) % 3, (axis + 2) % 3
        flat = triangles[:, :, [b, c]]  # (T, 3, 2)
        self.low = torch.ceil(flat.min(dim=1).values).clamp(min=0).to(torch.int64)  # (T, 2) lattice box
        high = torch.floor(flat.max(dim=1).values).clamp(max=resolution).to(torch.int64)
        size = (high - self.low + 1).clamp(min=0)
        # edge i runs from vertex i+1 to i+2 (opposite vertex i); value(x, y) = c0 * y + c1 * x + c2
        coef, top_left = [], []
        for i in range(3):
            p, q = flat[:, (i + 1) % 3], flat[:, (i + 2) % 3]
            swap = (p[:, 0] > q[:, 0]) | ((p[:, 0] == q[:, 0]) & (p[:, 1] > q[:, 1]))
            lo = torch.where(swap[:, None], q, p)
            hi = torch.where(swap[:, None], p, q)
            alpha, beta = hi[:, 0] - lo[:, 0], hi[:, 1] - lo[:, 1]
            sign = torch.where(swap, -1.0, 1.0).to(torch.float64)
            coef.append(torch.stack([alpha, -beta, beta * lo[:, 0] - alpha * lo[:, 1]], dim=1) * sign[:, None])
        coef = torch.stack(coef, dim=1)  # (T, 3 edges, 3)
        area = _evaluate(coef[:, 0], flat[:, 0])  # twice the signed projected area (edge 0 at vertex 0)
        orient = torch.sign(area)
        self.coef = coef * orient[:, None, None]  # counter-clockwise: inside means every value >= 0
        for i in range(3):
            d = (flat[:, (i + 2) % 3] - flat[:, (i + 1) % 3]) * orient[:, None]  # edge direction, CCW
            top_left.append((d[:, 1] < 0) | ((d[:, 1] == 0) & (d[:, 0] < 0)))
        self.top_left = torch.stack(top_left, dim=1)  # (T, 3)
        # plane height along the axis: along = h0 + hb * x + hc * y
        normal = torch.linalg.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
        n_a = normal[:, axis]
        safe = torch.where(n_a != 0, n_a, torch.ones_like(n_a))
        p0 = triangles[:, 0]
        self.height = torch.stack([p0[:, axis] + (normal[:, b] * p0[:, b] + normal[:, c] * p0[:, c]) / safe,
                                   -normal[:, b] / safe, -normal[:, c] / safe], dim=1)
        self.width = size[:, 1].clamp(min=1)
        self.count = size[:, 0] * size[:, 1] * ((area != 0) & (n_a != 0))  # edge-on triangles cross no line

    def crossings(self, start: int, stop: int) -> EdgeCrossings:
        counts = self.count[start:stop]
        which = torch.repeat_interleave(torch.arange(start, stop), counts)  # (N,) triangle of each candidate
        first = torch.cumsum(counts, dim=0) - counts
        local = torch.arange(which.numel()) - first[which - start]
        x = self.low[which, 0] + local // self.width[which]
        y = self.low[which, 1] + local % self.width[which]
        xf, yf = x.to(torch.float64), y.to(torch.float64)
        coef, top_left = self.coef[which], self.top_left[which]
        inside = torch.ones_like(which, dtype=torch.bool)
        for i in range(3):
            value = coef[:, i, 0] * yf + coef[:, i, 1] * xf + coef[:, i, 2]
            inside &= (value > 0) | ((value == 0) & top_left[:, i])
        which, x, y = which[inside], x[inside], y[inside]
        h = self.height[which]
        along = h[:, 0] + h[:, 1] * x.to(torch.float64) + h[:, 2] * y.to(torch.float64)
        cell = torch.floor(along).to(torch.int64)
        valid = (cell >= 0) & (cell < self.resolution)
        owner = torch.empty((int(valid.sum()), 3), dtype=torch.int32)
        owner[:, self.axis] = cell[valid].to(torch.int32)
        owner[:, (self.axis + 1) % 3] = (x[valid] - 1).to(torch.int32)
        owner[:, (self.axis + 2) % 3] = (y[valid] - 1).to(torch.int32)
        triangle = which[valid].to(torch.int32)
        return EdgeCrossings(triangle, torch.full_like(triangle, self.axis, dtype=torch.int8), owner, along[valid])


def _evaluate(coef: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    return coef[:, 0] * point[:, 1] + coef[:, 1] * point[:, 0] + coef[:, 2]


__all__ = ["AROUND_EDGE", "ActiveVoxels", "EdgeCrossings", "active_voxels", "chunk_ranges", "edge_crossings",
           "key_voxels", "voxel_keys"]
