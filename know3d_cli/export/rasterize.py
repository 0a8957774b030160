"""A vectorised 2D triangle rasteriser (torch, CPU) for baking in UV space.

Each triangle enumerates the texel centres of its bounding box; barycentric coordinates decide coverage. Work is
chunked by candidate-texel count to bound memory. Where triangles overlap (shared edges, overlapping charts) the
highest face index wins, so the result does not depend on chunking.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def rasterize_triangles(
    triangles: torch.Tensor, size: int, max_candidates: int = 1 << 22, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise 2D triangles into a `size` x `size` image.

    Texel (row, col) has its centre at pixel coordinates (col + 0.5, row + 0.5); it is covered by a triangle
    when that centre lies inside it (barycentrics >= -eps).

    Args:
        triangles: (F, 3, 2) float vertex positions in pixel coordinates (x = column, y = row).
        size: image side S.
        max_candidates: bounding-box texels tested per chunk.
        eps: tolerance on barycentric coordinates (covers texel centres exactly on an edge).

    Returns:
        face_id: (S, S) int64 covering face per texel, -1 where empty.
        bary: (S, S, 3) float32 barycentric coordinates of the texel centre in that face (0 where empty).
    """
    if triangles.ndim != 3 or triangles.shape[1:] != (3, 2):
        raise ValueError(f"triangles must have shape (F, 3, 2), got {tuple(triangles.shape)}")
    tri = triangles.to(torch.float64)
    n_faces = tri.shape[0]
    face_id = torch.full((size * size,), -1, dtype=torch.int64)
    bary = torch.zeros(size * size, 3, dtype=torch.float32)
    if n_faces == 0:
        return face_id.view(size, size), bary.view(size, size, 3)

    lo = torch.ceil(tri.amin(dim=1) - 0.5).clamp(0, size - 1).to(torch.int64)  # (F, 2) first texel (x, y)
    hi = torch.floor(tri.amax(dim=1) - 0.5).clamp(-1, size - 1).to(torch.int64)  # (F, 2) last texel
    extent = (hi - lo + 1).clamp(min=0)  # (F, 2)
    area2 = _cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F,) twice the signed area
    count = extent[:, 0] * extent[:, 1] * (area2.abs() > 1e-12)
    ends = torch.cumsum(count, dim=0)

    start_face = 0
    while start_face < n_faces:
        budget_end = int(ends[start_face - 1]) + max_candidates if start_face > 0 else max_candidates
        stop_face = int(torch.searchsorted(ends, torch.tensor(budget_end), right=True))
        stop_face = max(stop_face, start_face + 1)  # a single huge triangle still gets its own chunk
        _rasterize_chunk(tri, lo, extent, count, area2, start_face, stop_face, size, eps, face_id, bary)
        start_face = stop_face
    return face_id.view(size, size), bary.view(size, size, 3)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _rasterize_chunk(
    tri: torch.Tensor,
    lo: torch.Tensor,
    extent: torch.Tensor,
    count: torch.Tensor,
    area2: torch.Tensor,
    start: int,
    stop: int,
    size: int,
    eps: float,
    face_id: torch.Tensor,
    bary: torch.Tensor,
) -> None:
    faces = torch.arange(start, stop)
    n = count[start:stop]
    total = int(n.sum())
    if total == 0:
        return
    f = torch.repeat_interleave(faces, n)  # (T,) face of each candidate texel
    first = torch.cumsum(n, dim=0) - n
    local = torch.arange(total) - torch.repeat_interleave(first, n)
    width = extent[f, 0]
    x = lo[f, 0] + local % width
    y = lo[f, 1] + local // width
    p = torch.stack([x, y], dim=1).to(torch.float64) + 0.5  # (T, 2) texel centres
    a, b, c = tri[f, 0], tri[f, 1], tri[f, 2]
    w1 = _cross(p - a, c - a) / area2[f]  # weight of b
    w2 = _cross(b - a, p - a) / area2[f]  # weight of c
    w0 = 1.0 - w1 - w2
    inside = (w0 >= -eps) & (w1 >= -eps) & (w2 >= -eps)
    f, x, y = f[inside], x[inside], y[inside]
    weights = torch.stack([w0[inside], w1[inside], w2[inside]], dim=1)
    texel = y * size + x
    winner = torch.full((size * size,), -1, dtype=torch.int64)
    winner.scatter_reduce_(0, texel, f, reduce="amax")
    keep = winner[texel] == f  # one candidate per texel: its highest face in this chunk
    texel = texel[keep]
    face_id[texel] = f[keep]
    w = weights[keep].clamp(0.0, 1.0)
    bary[texel] = (w / w.sum(dim=1, keepdim=True)).to(torch.float32)


__all__ = ["rasterize_triangles"]
