"""Closest points on a dense triangle mesh (replaces the CUDA BVH used by TRELLIS.2's bake).

Method: a scipy cKDTree over the mesh vertices finds each query's nearest vertex, then the exact closest point
is taken over the faces around that vertex (its one-ring). On the dense, well-shaped meshes the decoder produces
(and for queries already close to the surface, as baked texels are) the true closest face is almost always in
that ring; when it is not, the answer is a point of a neighbouring face at most about one edge length away. This
is far faster than trimesh's proximity query (a few seconds for millions of queries on 2 cores).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy.spatial import cKDTree

logger = logging.getLogger(__name__)


class ClosestPointQuery:
    """Closest-point queries against one mesh; build once, query many times.

    Args:
        vertices: (V, 3) float. faces: (F, 3) int64.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        self.vertices = np.ascontiguousarray(vertices, dtype=np.float64)
        self.faces = np.ascontiguousarray(faces, dtype=np.int64)
        self.tree = cKDTree(self.vertices)
        corner_vertex = self.faces.reshape(-1)
        order = np.argsort(corner_vertex, kind="stable")
        self.ring_faces = torch.from_numpy(order // 3)  # faces around each vertex, grouped by vertex
        counts = np.bincount(corner_vertex, minlength=self.vertices.shape[0])
        self.ring_count = torch.from_numpy(counts)
        self.ring_start = torch.from_numpy(np.cumsum(counts) - counts)
        self.tri = torch.from_numpy(self.vertices[self.faces]).to(torch.float32)  # (F, 3, 3)

    def query(self, points: np.ndarray, chunk_size: int = 1 << 19) -> tuple[np.ndarray, np.ndarray]:
        """Closest surface points.

        Args:
            points: (N, 3) float query points.

        Returns:
            closest: (N, 3) float32 points on the mesh; face: (N,) int64 face each lies on.
        """
        points = np.ascontiguousarray(points, dtype=np.float64)
        _, nearest = self.tree.query(points, k=1, workers=-1)
        nearest = torch.from_numpy(np.asarray(nearest, dtype=np.int64))
        query = torch.from_numpy(points).to(torch.float32)
        closest = torch.empty(points.shape[0], 3, dtype=torch.float32)
        face = torch.empty(points.shape[0], dtype=torch.int64)
        for start in range(0, points.shape[0], chunk_size):
            stop = min(start + chunk_size, points.shape[0])
            closest[start:stop], face[start:stop] = self._one_ring(query[start:stop], nearest[start:stop])
        return closest.numpy(), face.numpy()

    def _one_ring(self, q: torch.Tensor, nearest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.ring_count[nearest]  # (Q,) faces around each nearest vertex
        owner = torch.repeat_interleave(torch.arange(q.shape[0]), n)  # (T,) query of each candidate
        first = torch.cumsum(n, dim=0) - n
        local = torch.arange(owner.numel()) - torch.repeat_interleave(first, n)
        cand_face = self.ring_faces[self.ring_start[nearest[owner]] + local]  # (T,)
        cp = closest_point_on_triangles(q[owner], self.tri[cand_face])  # (T, 3)
        dist = ((cp - q[owner]) ** 2).sum(dim=1)
        best = torch.full((q.shape[0],), float("inf")).scatter_reduce_(0, owner, dist, reduce="amin")
        is_best = dist == best[owner]
        pick = torch.full((q.shape[0],), -1, dtype=torch.int64)
        pick.scatter_reduce_(0, owner[is_best], torch.arange(owner.numel())[is_best], reduce="amax")
        return cp[pick], cand_face[pick]


def closest_point_on_triangles(p: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """(T, 3) closest point to each p on its triangle `tri` (T, 3, 3).

    Voronoi-region tests (Ericson, Real-Time Collision Detection §5.1.5); regions are applied from lowest to
    highest precedence (interior, edges BC/AC, vertex C, edge AB, vertices B and A) so later ones win.
    """
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac, ap = b - a, c - a, p - a
    d1 = (ab * ap).sum(-1)
    d2 = (ac * ap).sum(-1)
    bp = p - b
    d3 = (ab * bp).sum(-1)
    d4 = (ac * bp).sum(-1)
    cp_ = p - c
    d5 = (ab * cp_).sum(-1)
    d6 = (ac * cp_).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    tiny = 1e-30
    # interior (default)
    denom = (va + vb + vc)
    denom = torch.where(denom.abs() < tiny, torch.full_like(denom, tiny), denom)
    v = vb / denom
    w = vc / denom
    out = a + ab * v[:, None] + ac * w[:, None]
    # edge regions
    bc_t = (d4 - d3) / ((d4 - d3) + (d5 - d6)).clamp(min=tiny)
    on_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    out = torch.where(on_bc[:, None], b + (c - b) * bc_t[:, None], out)
    ac_t = d2 / (d2 - d6).clamp(min=tiny)
    on_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    out = torch.where(on_ac[:, None], a + ac * ac_t[:, None], out)
    out = torch.where(((d6 >= 0) & (d5 <= d6))[:, None], c, out)
    ab_t = d1 / (d1 - d3).clamp(min=tiny)
    on_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    out = torch.where(on_ab[:, None], a + ab * ab_t[:, None], out)
    out = torch.where(((d3 >= 0) & (d4 <= d3))[:, None], b, out)
    out = torch.where(((d1 <= 0) & (d2 <= 0))[:, None], a, out)
    return out


__all__ = ["ClosestPointQuery", "closest_point_on_triangles"]
