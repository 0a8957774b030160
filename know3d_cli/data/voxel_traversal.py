"""Which voxels a triangle overlaps, and which a line segment passes through (vectorised, chunked).

Triangles: each is handled in its own frame (u, v, m), m being the axis its normal is closest to and (u, v, m) a
cyclic order of (x, y, z), with the origin at the lowest voxel of its bounding box. Candidate columns (u, v) of its
bounding box are kept when the triangle's projection onto (u, v) touches the column's square; the plane crosses at
most 3 voxels of a kept column (|slope| <= 1), and each is kept when the projections onto (v, m) and (m, u) touch
too. Together these are the plane-and-projections overlap test of Schwarz and Seidel (2010) against the closed
voxel box, the test TRELLIS.2's o-voxel toolkit uses for its face QEF; a large tilted triangle costs about its
area in voxels, not its bounding-box volume.

Segments: a segment is cut at every integer plane it crosses; the middle of each piece names one voxel it passes
through (what a 3-D DDA walk visits).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .grid_crossings import chunk_ranges


def triangle_voxel_overlaps(
    triangles: torch.Tensor, resolution: int, chunk_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (triangle (K,) int64, voxel key (K,) int64, see `voxel_keys`) for every voxel in [0, R)^3 that a
    triangle overlaps; degenerate triangles overlap nothing.

    Args:
        triangles: (T, 3, 3) float64 corners in voxel units.
        chunk_size: candidate columns per chunk (a single larger triangle gets a chunk of its own).
    """
    table = _OverlapTable(triangles, resolution)
    for start, stop in chunk_ranges(table.columns, chunk_size):
        yield table.overlaps(start, stop)


class _OverlapTable:
    def __init__(self, triangles: torch.Tensor, resolution: int):
        normal = torch.linalg.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
        major = normal.abs().argmax(dim=1)
        order = torch.stack([(major + 1) % 3, (major + 2) % 3, major], dim=1)  # (T, 3) axes u, v, m
        q = triangles.gather(2, order[:, None, :].expand(-1, 3, -1))  # (T, 3 corners, 3) in (u, v, m)
        origin = torch.floor(q.min(dim=1).values).clamp(0, resolution - 1)
        top = torch.floor(q.max(dim=1).values).clamp(0, resolution - 1)
        self.size = (top - origin + 1).to(torch.int64)  # (T, 3) voxels of the bounding box per frame axis
        local = q - origin[:, None, :]
        n = torch.linalg.cross(local[:, 1] - local[:, 0], local[:, 2] - local[:, 0])  # cyclic order keeps n
        degenerate = n[:, 2] == 0
        self.columns = self.size[:, 0] * self.size[:, 1] * ~degenerate
        safe = torch.where(degenerate, torch.ones_like(n[:, 2]), n[:, 2])
        gu, gv = -n[:, 0] / safe, -n[:, 1] / safe
        self.plane = torch.stack([local[:, 0, 2] - gu * local[:, 0, 0] - gv * local[:, 0, 1], gu, gv], dim=1)
        # 2-D edge tests per projection (i, j) of the frame, sign from the normal's remaining component
        self.tests = [_edge_tests(local, n, i, j, k) for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1))]
        stride = torch.tensor([resolution * resolution, resolution, 1], dtype=torch.int64)
        self.stride = stride[order]  # (T, 3) key stride of u, v, m
        self.base = (origin.to(torch.int64) * self.stride).sum(dim=1)

    def overlaps(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        counts = self.columns[start:stop]
        tri = torch.repeat_interleave(torch.arange(start, stop), counts)
        first = torch.cumsum(counts, dim=0) - counts
        local = torch.arange(tri.numel()) - first[tri - start]
        width = self.size[tri, 1]
        cu, cv = local // width, local % width
        fu, fv = cu.to(torch.float32), cv.to(torch.float32)
        keep = _passes(self.tests[0], tri, fu, fv)
        tri, cu, cv, fu, fv = tri[keep], cu[keep], cv[keep], fu[keep], fv[keep]
        h0, gu, gv = self.plane[tri].unbind(dim=1)
        base = h0 + gu * cu.to(torch.float64) + gv * cv.to(torch.float64)
        k_low = torch.floor(base + gu.clamp(max=0) + gv.clamp(max=0)).to(torch.int64).clamp(min=0)
        k_high = torch.minimum(torch.floor(base + gu.clamp(min=0) + gv.clamp(min=0)).to(torch.int64),
                               self.size[tri, 2] - 1)
        depth = (k_high - k_low + 1).clamp(min=0)
        column = torch.repeat_interleave(torch.arange(tri.numel()), depth)
        first = torch.cumsum(depth, dim=0) - depth
        k = k_low[column] + torch.arange(column.numel()) - first[column]
        tri, cu, cv, fu, fv = tri[column], cu[column], cv[column], fu[column], fv[column]
        fk = k.to(torch.float32)
        hit = _passes(self.tests[1], tri, fv, fk) & _passes(self.tests[2], tri, fk, fu)
        tri, cu, cv, k = tri[hit], cu[hit], cv[hit], k[hit]
        stride = self.stride[tri]
        key = self.base[tri] + cu * stride[:, 0] + cv * stride[:, 1] + k * stride[:, 2]
        return tri, key


def _edge_tests(local: torch.Tensor, n: torch.Tensor, i: int, j: int, k: int) -> torch.Tensor:
    """(T, 3 edges, 3) float32 (a, b, d): the unit square [p, p+1]^2 of the (i, j) plane touches the triangle's
    projection only if a * p_i + b * p_j + d >= 0 for all three edges."""
    sign = torch.where(n[:, k] < 0, -1.0, 1.0).to(local.dtype)
    rows = []
    for e in range(3):
        v = local[:, e]
        edge = local[:, (e + 1) % 3] - v
        a = -edge[:, j] * sign
        b = edge[:, i] * sign
        d = -(a * v[:, i] + b * v[:, j]) + a.clamp(min=0) + b.clamp(min=0)
        rows.append(torch.stack([a, b, d], dim=1))
    return torch.stack(rows, dim=1).to(torch.float32)


def _passes(tests: torch.Tensor, tri: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    t = tests[tri]  # (N, 3, 3)
    return ((t[:, :, 0] * p[:, None] + t[:, :, 1] * q[:, None] + t[:, :, 2]) >= 0).all(dim=1)


def segment_voxels(segments: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, 2, 3) float64 segments in voxel units -> (segment index (K,) int64, voxel (K, 3) int64) in [0, R)^3."""
    p0, p1 = segments[:, 0], segments[:, 1]
    delta = p1 - p0
    c0, c1 = torch.floor(p0).to(torch.int64), torch.floor(p1).to(torch.int64)
    steps = (c1 - c0).abs()  # (S, 3) integer planes crossed per axis
    seg_ids, cut_t = [torch.arange(segments.shape[0])], [torch.zeros(segments.shape[0], dtype=torch.float64)]
    for a in range(3):
        which = torch.repeat_interleave(torch.arange(segments.shape[0]), steps[:, a])
        first = torch.cumsum(steps[:, a], dim=0) - steps[:, a]
        i = torch.arange(which.numel()) - first[which]
        forward = delta[which, a] > 0
        plane = torch.where(forward, c0[which, a] + 1 + i, c0[which, a] - i).to(torch.float64)
        seg_ids.append(which)
        cut_t.append((plane - p0[which, a]) / delta[which, a])
    seg = torch.cat(seg_ids)
    t = torch.cat(cut_t)
    order = torch.argsort(seg.to(torch.float64) * 2.0 + t)  # by segment, then along it
    seg, t = seg[order], t[order]
    last = torch.ones_like(seg, dtype=torch.bool)
    last[:-1] = seg[1:] != seg[:-1]
    t_next = torch.where(last, torch.ones_like(t), torch.roll(t, -1))
    middle = p0[seg] + delta[seg] * ((t + t_next) / 2)[:, None]
    voxel = torch.floor(middle).to(torch.int64)
    inside = ((voxel >= 0) & (voxel < resolution)).all(dim=1)
    return seg[inside], voxel[inside]


__all__ = ["segment_voxels", "triangle_voxel_overlaps"]
