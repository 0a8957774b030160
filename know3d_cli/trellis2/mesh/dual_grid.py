"""O-Voxel flexible dual grid -> triangle mesh (spec §1.8 step 2), and small-hole filling (§1.8 step 3).

Each active voxel carries one dual vertex. A voxel "owns" the three primal edges through its maximum corner
(x-edge at y = j+1, z = k+1, and so on); a set flag means the surface crosses that edge, and the four voxels around
the edge form a quad.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ...geometry import VoxelIndex

logger = logging.getLogger(__name__)

# Voxels around the edge owned by a voxel, per axis, in quad order (spec §1.8).
EDGE_NEIGHBOR_OFFSETS = torch.tensor(
    [
        [[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0]],  # x-edge
        [[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]],  # y-edge
        [[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0]],  # z-edge
    ],
    dtype=torch.int64,
)
_SPLIT_02 = torch.tensor([0, 1, 2, 0, 2, 3])  # used when w0*w2 > w1*w3
_SPLIT_13 = torch.tensor([0, 1, 3, 3, 1, 2])


def flexible_dual_grid_to_mesh(
    coords: torch.Tensor,
    offsets: torch.Tensor,
    flags: torch.Tensor,
    split_weights: torch.Tensor,
    resolution: int,
    orient: bool = True,
    aabb_min: float = -0.5,
    chunk_size: int = 1 << 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the triangle mesh of a flexible dual grid.

    Args:
        coords: (M, 3) int active voxel coordinates (unique) in a grid of side `resolution`.
        offsets: (M, 3) float dual vertex position inside each voxel, in voxel units (decoded, [-0.5, 1.5]).
        flags: (M, 3) bool edge-intersection flags (x, y, z edge owned by each voxel).
        split_weights: (M,) float quad split weights (softplus output, > 0).
        resolution: grid side R; voxel size is 1 / R and the grid spans [aabb_min, aabb_min + 1]^3.
        orient: make triangles counter-clockwise seen from outside (see below). With False every quad keeps the
            reference winding, whose normal points to the negative edge axis whichever way the surface crosses.
        aabb_min: grid origin (same on all axes).
        chunk_size: flagged edges processed at once.

    Returns:
        vertices: (M, 3) float32, one per voxel (`(coord + offset) * voxel_size + aabb_min`), row-aligned with
            `coords`; voxels no quad uses stay as unreferenced vertices.
        faces: (F, 3) int64, two triangles per kept quad, ordered by (voxel, axis) like the reference.

    Orientation (not in the reference, which fixes it later during export): along any grid line parallel to an
    axis the flagged edges alternate entering/leaving the closed surface, counting from outside the grid. The
    rank of an edge among the flagged edges of its line, counted from the nearer end of the line, tells which it
    is; leaving-edge quads are flipped. Counting from the nearer end keeps a line with an odd number of crossings
    (an open surface) from flipping everything past its gap.
    """
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must have shape (M, 3), got {tuple(coords.shape)}")
    m = coords.shape[0]
    if offsets.shape != (m, 3) or flags.shape != (m, 3) or split_weights.reshape(-1).shape != (m,):
        raise ValueError(
            f"offsets (M, 3), flags (M, 3) and split_weights (M,) must match coords (M={m}); got "
            f"{tuple(offsets.shape)}, {tuple(flags.shape)}, {tuple(split_weights.shape)}"
        )
    coords = coords.to(torch.int64)
    voxel_size = 1.0 / resolution
    vertices = ((coords.to(torch.float32) + offsets.to(torch.float32)) * voxel_size + aabb_min).contiguous()
    weights = split_weights.reshape(-1).to(torch.float32)
    flags = flags.to(torch.bool)

    index = VoxelIndex(coords, resolution)
    edge_voxel, edge_axis = flags.nonzero(as_tuple=True)  # voxel-major, axis-minor (reference order)
    entering = _entering_edges(coords, edge_voxel, edge_axis, resolution) if orient else None
    offsets_table = EDGE_NEIGHBOR_OFFSETS.to(coords.device)
    face_chunks = []
    for start in range(0, edge_voxel.numel(), chunk_size):
        ev = edge_voxel[start:start + chunk_size]
        ea = edge_axis[start:start + chunk_size]
        quad = index.lookup(coords[ev][:, None, :] + offsets_table[ea])  # (n, 4) voxel rows or -1
        keep = (quad >= 0).all(dim=1)
        quad = quad[keep]
        w = weights[quad]  # (L, 4)
        split_02 = (w[:, 0] * w[:, 2] > w[:, 1] * w[:, 3])[:, None]
        tris = torch.where(split_02, quad[:, _SPLIT_02], quad[:, _SPLIT_13]).reshape(-1, 2, 3)  # (L, 2, 3)
        if entering is not None:
            flip = ~entering[start:start + chunk_size][keep]
            tris[flip] = tris[flip][:, :, [0, 2, 1]]
        face_chunks.append(tris.reshape(-1, 3))
    faces = torch.cat(face_chunks) if face_chunks else torch.zeros(0, 3, dtype=torch.int64, device=coords.device)
    logger.debug("dual grid: %d voxels, %d flagged edges, %d faces", m, edge_voxel.numel(), faces.shape[0])
    return vertices, faces


def _entering_edges(
    coords: torch.Tensor, edge_voxel: torch.Tensor, edge_axis: torch.Tensor, resolution: int
) -> torch.Tensor:
    """(E,) bool: does the flagged edge enter the surface when walking its axis in the + direction?"""
    c = coords[edge_voxel]  # (E, 3)
    along = c.gather(1, edge_axis[:, None]).squeeze(1)  # position along the edge's line
    other = torch.stack([c[:, 1], c[:, 0], c[:, 0]])  # first other axis per edge axis
    other2 = torch.stack([c[:, 2], c[:, 2], c[:, 1]])
    first = other.gather(0, edge_axis[None]).squeeze(0)
    second = other2.gather(0, edge_axis[None]).squeeze(0)
    line = (edge_axis * resolution + first) * resolution + second  # (E,) one id per grid line
    key = line * resolution + along
    order = torch.argsort(key)
    line_sorted = line[order]
    n = order.numel()
    new_line = torch.ones(n, dtype=torch.bool, device=coords.device)
    new_line[1:] = line_sorted[1:] != line_sorted[:-1]
    idx = torch.arange(n, device=coords.device)
    line_start = torch.cummax(torch.where(new_line, idx, torch.zeros_like(idx)), dim=0).values
    _, counts = torch.unique_consecutive(line_sorted, return_counts=True)
    count = counts.repeat_interleave(counts)  # (n,) crossings on the edge's line
    rank = idx - line_start  # from the low end
    rank_hi = count - 1 - rank  # from the high end
    entering_sorted = torch.where(rank <= rank_hi, rank % 2 == 0, rank_hi % 2 == 1)
    entering = torch.empty_like(entering_sorted)
    entering[order] = entering_sorted
    return entering


def fill_small_holes(
    vertices: torch.Tensor, faces: torch.Tensor, max_perimeter: float = 0.03
) -> tuple[torch.Tensor, torch.Tensor]:
    """Close boundary loops whose perimeter is below `max_perimeter` (CuMesh `fill_holes`).

    Each qualifying loop gets a new vertex at its centroid and a fan of triangles, wound to match the faces
    around it. Only simple loops (every boundary vertex has exactly one incoming and one outgoing boundary edge)
    are filled; open edges on non-manifold or pinched boundaries are left alone.

    Args:
        vertices: (V, 3) float.
        faces: (F, 3) int64, consistently oriented.
        max_perimeter: loops with a perimeter strictly below this are filled (object units).

    Returns:
        vertices: (V + H, 3) with one centroid per filled hole appended; faces: (F + added, 3) int64.
    """
    v_np = vertices.detach().cpu().numpy()
    f_np = faces.detach().cpu().numpy().astype(np.int64)
    nv = v_np.shape[0]
    if f_np.shape[0] == 0:
        return vertices, faces
    directed = np.stack([f_np[:, [0, 1]], f_np[:, [1, 2]], f_np[:, [2, 0]]], axis=1).reshape(-1, 2)  # (3F, 2)
    undirected = np.sort(directed, axis=1)
    key = undirected[:, 0] * nv + undirected[:, 1]
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    boundary = directed[counts[inverse] == 1]  # (B, 2) a -> b as walked by its face
    if boundary.shape[0] == 0:
        return vertices, faces

    out_deg = np.bincount(boundary[:, 0], minlength=nv)
    in_deg = np.bincount(boundary[:, 1], minlength=nv)
    graph = coo_matrix((np.ones(len(boundary)), (boundary[:, 0], boundary[:, 1])), shape=(nv, nv))
    _, label = connected_components(graph, directed=False)
    loop = label[boundary[:, 0]]  # (B,) component of each boundary edge
    n_labels = label.max() + 1
    bad_vertex = (out_deg != 1) | (in_deg != 1)
    boundary_vertices = np.unique(boundary.reshape(-1))
    bad = np.zeros(n_labels, dtype=bool)
    bad[label[boundary_vertices[bad_vertex[boundary_vertices]]]] = True
    length = np.linalg.norm(v_np[boundary[:, 1]] - v_np[boundary[:, 0]], axis=1)
    perimeter = np.bincount(loop, weights=length, minlength=n_labels)
    n_edges = np.bincount(loop, minlength=n_labels)
    fill = (~bad) & (perimeter < max_perimeter) & (n_edges >= 3)
    fill_edge = fill[loop]
    if not fill_edge.any():
        return vertices, faces

    loops = np.flatnonzero(fill)
    new_id = np.full(n_labels, -1, dtype=np.int64)
    new_id[loops] = nv + np.arange(loops.size)
    sel = boundary[fill_edge]
    sel_loop = loop[fill_edge]
    centroid = np.zeros((loops.size, 3), dtype=np.float64)
    np.add.at(centroid, new_id[sel_loop] - nv, v_np[sel[:, 0]])
    centroid /= n_edges[loops][:, None]
    new_faces = np.stack([sel[:, 1], sel[:, 0], new_id[sel_loop]], axis=1)
    logger.debug("filled %d holes with %d faces", loops.size, new_faces.shape[0])
    vertices = torch.cat([vertices, torch.from_numpy(centroid).to(vertices.dtype).to(vertices.device)])
    faces = torch.cat([faces, torch.from_numpy(new_faces).to(faces.dtype).to(faces.device)])
    return vertices, faces


__all__ = ["EDGE_NEIGHBOR_OFFSETS", "fill_small_holes", "flexible_dual_grid_to_mesh"]
