"""Which voxels a triangle overlaps, and which a line segment passes through (vectorised, chunked).

Triangles: candidates are enumerated column by column along the axis the triangle's normal is closest to, so a
large tilted triangle costs about its area in voxels, not its bounding-box volume. Each candidate is then tested
exactly against the closed voxel box with the plane-and-projections overlap test of Schwarz and Seidel (2010),
the test TRELLIS.2's o-voxel toolkit uses for its face QEF.

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
    """Yield (triangle index (K,) int64, voxel (K, 3) int64) for every voxel in [0, R)^3 a triangle overlaps.

    Args:
        triangles: (T, 3, 3) float64 corners in voxel units.
        chunk_size: candidate voxels per chunk (a single larger triangle gets a chunk of its own).
    """
    normal = torch.linalg.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    major = normal.abs().argmax(dim=1)  # (T,) column axis
    low = torch.floor(triangles.min(dim=1).values).clamp(0, resolution - 1).to(torch.int64)  # (T, 3)
    high = torch.floor(triangles.max(dim=1).values).clamp(0, resolution - 1).to(torch.int64)
    size = high - low + 1
    depth_along = size.gather(1, major[:, None])[:, 0]
    columns = (size.prod(dim=1) // depth_along) * (normal.abs().amax(dim=1) > 0)  # degenerate: no candidates
    # a column holds at most 3 candidates along the major axis (|slope| <= 1 in both directions)
    for start, stop in chunk_ranges(columns * torch.clamp(depth_along, max=3), chunk_size):
        yield _overlaps(triangles[start:stop], normal[start:stop], major[start:stop], low[start:stop],
                        high[start:stop], columns[start:stop], start)


def _overlaps(tri, normal, major, low, high, columns, start):
    # columns: every (u, v) of the two minor axes inside the bounding box
    u_axis = (major + 1) % 3
    v_axis = (major + 2) % 3
    size = high - low + 1
    sv = size.gather(1, v_axis[:, None])[:, 0]
    which = torch.repeat_interleave(torch.arange(tri.shape[0]), columns)
    first = torch.cumsum(columns, dim=0) - columns
    local = torch.arange(which.numel()) - first[which]
    cu = low.gather(1, u_axis[:, None])[which, 0] + local // sv[which]
    cv = low.gather(1, v_axis[:, None])[which, 0] + local % sv[which]
    # range of the triangle's plane over the column's square, clipped to the triangle's extent along the axis
    n = normal[which]
    m, ua, va = major[which], u_axis[which], v_axis[which]
    n_m = n.gather(1, m[:, None])[:, 0]
    n_u = n.gather(1, ua[:, None])[:, 0]
    n_v = n.gather(1, va[:, None])[:, 0]
    p0 = tri[which, 0]
    height = p0.gather(1, m[:, None])[:, 0]  # plane: w = height - (n_u (u - p0u) + n_v (v - p0v)) / n_m
    du = cu.to(torch.float64) - p0.gather(1, ua[:, None])[:, 0]
    dv = cv.to(torch.float64) - p0.gather(1, va[:, None])[:, 0]
    gu, gv = -n_u / n_m, -n_v / n_m
    base = height + gu * du + gv * dv
    w_low = base + torch.clamp(gu, max=0) + torch.clamp(gv, max=0)
    w_high = base + torch.clamp(gu, min=0) + torch.clamp(gv, min=0)
    k_low = torch.maximum(torch.floor(w_low).to(torch.int64), low.gather(1, major[:, None])[which, 0])
    k_high = torch.minimum(torch.floor(w_high).to(torch.int64), high.gather(1, major[:, None])[which, 0])
    count = (k_high - k_low + 1).clamp(min=0)

    cand = torch.repeat_interleave(torch.arange(which.numel()), count)
    first = torch.cumsum(count, dim=0) - count
    k = k_low[cand] + torch.arange(cand.numel()) - first[cand]
    tri_local = which[cand]
    voxel = torch.empty((cand.numel(), 3), dtype=torch.int64)
    rows = torch.arange(cand.numel())
    voxel[rows, m[cand]] = k
    voxel[rows, ua[cand]] = cu[cand]
    voxel[rows, va[cand]] = cv[cand]
    hit = box_overlaps_triangle(tri[tri_local], voxel.to(torch.float64))
    return tri_local[hit] + start, voxel[hit]


def box_overlaps_triangle(tri: torch.Tensor, corner: torch.Tensor) -> torch.Tensor:
    """(N,) bool: does triangle (N, 3, 3) touch the closed unit box [corner, corner + 1] (N, 3)?"""
    v0, v1, v2 = tri[:, 0], tri[:, 1], tri[:, 2]
    edges = (v1 - v0, v2 - v1, v0 - v2)
    n = torch.linalg.cross(edges[0], edges[1])
    crit = (n > 0).to(tri.dtype)  # box corner farthest along n, relative to `corner`
    d1 = (n * (crit - v0)).sum(dim=1)
    d2 = (n * ((1 - crit) - v0)).sum(dim=1)
    np_ = (n * corner).sum(dim=1)
    hit = (np_ + d1) * (np_ + d2) <= 0
    for a in range(3):  # projections onto the planes (x, y), (y, z), (z, x)
        i, j = a, (a + 1) % 3
        sign = torch.where(n[:, (a + 2) % 3] < 0, -1.0, 1.0).to(tri.dtype)
        for e, v in zip(edges, (v0, v1, v2)):
            ni = -e[:, j] * sign
            nj = e[:, i] * sign
            d = -(ni * v[:, i] + nj * v[:, j]) + torch.clamp(ni, min=0) + torch.clamp(nj, min=0)
            hit &= ni * corner[:, i] + nj * corner[:, j] + d >= 0
    return hit


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


__all__ = ["box_overlaps_triangle", "segment_voxels", "triangle_voxel_overlaps"]
