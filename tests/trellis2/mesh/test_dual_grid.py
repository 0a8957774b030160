"""Flexible dual grid -> mesh on hand-built grids (counts, outward winding, split rule, chunking), and hole filling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from know3d_cli.trellis2.mesh import fill_small_holes, flexible_dual_grid_to_mesh

# Voxels sharing the edge a voxel owns, per axis, in quad order (written out from spec §1.8).
QUAD_OFFSETS = {
    0: [(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0)],
    1: [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)],
    2: [(0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)],
}


def dual_grid_from_inside(inside: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Active voxels and edge flags of the surface around a set of inside lattice points.

    Args:
        inside: (R+1, R+1, R+1) bool, one value per voxel corner (lattice point).

    Returns:
        coords: (M, 3) int64 voxels with mixed corners; flags: (M, 3) bool, set where the edge the voxel owns
        (through its maximum corner, along each axis) joins an inside and an outside point.
    """
    p = inside
    corners = [p[a:p.shape[0] - 1 + a, b:p.shape[1] - 1 + b, c:p.shape[2] - 1 + c] for a in (0, 1) for b in (0, 1)
               for c in (0, 1)]  # 8 x (R, R, R): corner (a, b, c) of every voxel
    mixed = np.any(corners, axis=0) & ~np.all(corners, axis=0)
    top = p[1:, 1:, 1:]  # maximum corner of every voxel
    flags = np.stack([p[:-1, 1:, 1:] != top, p[1:, :-1, 1:] != top, p[1:, 1:, :-1] != top], axis=-1)
    coords = np.argwhere(mixed)
    return torch.from_numpy(coords).to(torch.int64), torch.from_numpy(flags[mixed])


def box_inside(resolution: int, lo: int, hi: int) -> np.ndarray:
    """Lattice points in [lo, hi]^3 are inside."""
    inside = np.zeros((resolution + 1,) * 3, dtype=bool)
    inside[lo:hi + 1, lo:hi + 1, lo:hi + 1] = True
    return inside


def extract(coords, flags, resolution, offsets=None, weights=None, **kwargs):
    m = coords.shape[0]
    offsets = torch.full((m, 3), 0.5) if offsets is None else offsets
    weights = torch.ones(m) if weights is None else weights
    return flexible_dual_grid_to_mesh(coords, offsets, flags, weights, resolution, **kwargs)


def as_trimesh(vertices: torch.Tensor, faces: torch.Tensor) -> trimesh.Trimesh:
    return trimesh.Trimesh(vertices.numpy().astype(np.float64), faces.numpy(), process=False)


def quads_of(coords: torch.Tensor, flags: torch.Tensor) -> list[list[int]]:
    """Rows of the 4 voxels around each flagged edge, voxel-major and axis-minor, only where all 4 exist."""
    row = {tuple(c): n for n, c in enumerate(coords.tolist())}
    quads = []
    for n, c in enumerate(coords.tolist()):
        for axis in range(3):
            if flags[n, axis]:
                quad = [row.get((c[0] + d[0], c[1] + d[1], c[2] + d[2]), -1) for d in QUAD_OFFSETS[axis]]
                if min(quad) >= 0:
                    quads.append(quad)
    return quads


@pytest.mark.parametrize("n", [1, 2, 3])
def test_box_counts_closed_and_outward(n):
    resolution = 8
    coords, flags = dual_grid_from_inside(box_inside(resolution, 2, 2 + n - 1))
    vertices, faces = extract(coords, flags, resolution)
    assert vertices.shape == ((n + 1) ** 3 - (n - 1) ** 3, 3)  # the dual of a box of n^3 inside points
    assert faces.shape == (12 * n * n, 3) and faces.dtype == torch.int64
    mesh = as_trimesh(vertices, faces)
    assert mesh.is_watertight and mesh.is_winding_consistent
    # dual vertices at voxel centres: a box n voxels wide
    assert mesh.volume == pytest.approx((n / resolution) ** 3, rel=1e-5)


def test_single_point_cube_is_exact():
    """One inside lattice point: 8 voxels, 6 quads, vertices at (coord + offset) / R - 0.5."""
    resolution = 4
    coords, flags = dual_grid_from_inside(box_inside(resolution, 1, 1))
    assert sorted(map(tuple, coords.tolist())) == [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    assert int(flags.sum()) == 6
    offsets = torch.rand(8, 3, generator=torch.Generator().manual_seed(0)) * 0.4 + 0.3
    vertices, faces = extract(coords, flags, resolution, offsets=offsets)
    torch.testing.assert_close(vertices, (coords + offsets) / resolution - 0.5)
    assert faces.shape == (12, 3)
    mesh = as_trimesh(vertices, faces)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_hollow_box_cavity_faces_inward():
    """A 5^3 block with its centre point removed: the cavity's faces point into the cavity."""
    resolution = 8
    inside = box_inside(resolution, 1, 5)
    inside[3, 3, 3] = False
    coords, flags = dual_grid_from_inside(inside)
    offsets = torch.rand(coords.shape[0], 3, generator=torch.Generator().manual_seed(1)) * 0.2 + 0.4
    vertices, faces = extract(coords, flags, resolution, offsets=offsets)
    assert faces.shape == (12 * 25 + 12, 3)
    mesh = as_trimesh(vertices, faces)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.body_count == 2
    outer, cavity = sorted(mesh.split(only_watertight=False), key=lambda part: -abs(part.volume))
    assert outer.volume > 0 and cavity.volume < 0
    assert mesh.volume == pytest.approx(outer.volume + cavity.volume)


def test_unoriented_quads_face_the_negative_edge_axis():
    resolution = 4
    coords, flags = dual_grid_from_inside(box_inside(resolution, 1, 1))
    vertices, faces = extract(coords, flags, resolution, orient=False)
    quads = quads_of(coords, flags)
    axes = [axis for n in range(coords.shape[0]) for axis in range(3) if flags[n, axis]]
    normals = as_trimesh(vertices, faces).face_normals.reshape(len(quads), 2, 3)
    for axis, pair in zip(axes, normals):
        expected = -np.eye(3)[axis]
        np.testing.assert_allclose(pair, np.stack([expected, expected]), atol=1e-6)
    assert not as_trimesh(vertices, faces).is_winding_consistent  # half the cube points inward


def plane_grid(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lattice points with z <= 1 inside: one layer of voxels (z = 1) whose z-edges cross."""
    inside = np.zeros((resolution + 1,) * 3, dtype=bool)
    inside[:, :, :2] = True
    return dual_grid_from_inside(inside)


def test_plane_counts_and_consistent_normals():
    resolution = 4
    coords, flags = plane_grid(resolution)
    assert coords.shape == (16, 3) and (coords[:, 2] == 1).all()
    assert flags[:, 2].all() and not flags[:, :2].any()
    vertices, faces = extract(coords, flags, resolution)
    assert vertices.shape == (16, 3)
    assert faces.shape == (2 * 3 * 3, 3)  # quads need voxel x+1 and y+1: (R - 1)^2 of them
    assert np.unique(faces.numpy()).size == 16
    normals = as_trimesh(vertices, faces).face_normals
    np.testing.assert_allclose(np.abs(normals[:, 2]), 1.0, atol=1e-6)
    assert np.abs(normals[:, 2].sum()) == pytest.approx(len(normals))  # all the same way


def test_unreferenced_and_missing_voxels():
    resolution = 4
    coords, flags = plane_grid(resolution)
    # an extra voxel that no quad uses stays as an unreferenced, row-aligned vertex
    coords_extra = torch.cat([coords, torch.tensor([[0, 0, 3]])])
    flags_extra = torch.cat([flags, torch.tensor([[False, False, False]])])
    vertices, faces = extract(coords_extra, flags_extra, resolution)
    assert vertices.shape == (17, 3) and faces.shape == (18, 3)
    assert (faces != 16).all()
    torch.testing.assert_close(vertices[16], torch.tensor([0.5, 0.5, 3.5]) / resolution - 0.5)
    # a missing voxel drops every quad around it (4 for an interior voxel), flagged or not
    keep = ~((coords[:, 0] == 1) & (coords[:, 1] == 1))
    vertices, faces = extract(coords[keep], flags[keep], resolution)
    assert vertices.shape == (15, 3) and faces.shape == (2 * (9 - 4), 3)


def test_no_flags_gives_no_faces():
    coords, flags = plane_grid(4)
    vertices, faces = extract(coords, torch.zeros_like(flags), 4)
    assert vertices.shape == (16, 3) and faces.shape == (0, 3) and faces.dtype == torch.int64


def diagonal(tri_a: list[int], tri_b: list[int]) -> set[int]:
    return set(tri_a) & set(tri_b)


def test_split_rule_chooses_the_heavier_diagonal():
    """w0*w2 > w1*w3 splits along 0-2, otherwise (ties included) along 1-3."""
    resolution = 8
    coords, flags = dual_grid_from_inside(box_inside(resolution, 2, 3))
    quads = quads_of(coords, flags)
    # q0 and q2 differ in two coordinates, so they share a parity: heavy voxels make 0-2 win exactly when q0 is one
    heavy = coords.sum(dim=1) % 2 == 0
    weights = torch.where(heavy, 2.0, 1.0)
    vertices, faces = extract(coords, flags, resolution, weights=weights)
    assert faces.shape == (2 * len(quads), 3)
    for quad, pair in zip(quads, faces.reshape(-1, 2, 3).tolist()):
        expected = {quad[0], quad[2]} if heavy[quad[0]] else {quad[1], quad[3]}
        assert diagonal(*pair) == expected
    assert as_trimesh(vertices, faces).is_watertight

    _, faces = extract(coords, flags, resolution, weights=torch.ones(coords.shape[0]))
    for quad, pair in zip(quads, faces.reshape(-1, 2, 3).tolist()):
        assert diagonal(*pair) == {quad[1], quad[3]}


def test_split_triangles_keep_reference_order_without_orientation():
    coords, flags = plane_grid(4)
    quads = quads_of(coords, flags)
    gen = torch.Generator().manual_seed(2)
    weights = torch.rand(coords.shape[0], generator=gen) + 0.1
    _, faces = extract(coords, flags, 4, weights=weights, orient=False)
    for quad, pair in zip(quads, faces.reshape(-1, 2, 3).tolist()):
        q0, q1, q2, q3 = quad
        if weights[q0] * weights[q2] > weights[q1] * weights[q3]:
            assert pair == [[q0, q1, q2], [q0, q2, q3]]
        else:
            assert pair == [[q0, q1, q3], [q3, q1, q2]]


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_chunking_does_not_change_the_mesh(chunk_size):
    resolution = 8
    inside = box_inside(resolution, 1, 5)
    inside[3, 3, 3] = False
    coords, flags = dual_grid_from_inside(inside)
    gen = torch.Generator().manual_seed(3)
    offsets = torch.rand(coords.shape[0], 3, generator=gen)
    weights = torch.rand(coords.shape[0], generator=gen)
    vertices, faces = extract(coords, flags, resolution, offsets=offsets, weights=weights)
    vertices_c, faces_c = extract(coords, flags, resolution, offsets=offsets, weights=weights, chunk_size=chunk_size)
    assert torch.equal(vertices, vertices_c) and torch.equal(faces, faces_c)


def test_row_order_of_voxels_does_not_change_the_surface():
    resolution = 8
    coords, flags = dual_grid_from_inside(box_inside(resolution, 2, 4))
    perm = torch.randperm(coords.shape[0], generator=torch.Generator().manual_seed(4))
    vertices, faces = extract(coords[perm], flags[perm], resolution)
    mesh = as_trimesh(vertices, faces)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx((3 / resolution) ** 3, rel=1e-5)


@pytest.mark.parametrize(
    "coords_shape, offsets_shape, flags_shape, weights_shape",
    [
        ((5, 2), (5, 3), (5, 3), (5,)),
        ((5, 3), (4, 3), (5, 3), (5,)),
        ((5, 3), (5, 3), (5, 2), (5,)),
        ((5, 3), (5, 3), (5, 3), (6,)),
    ],
)
def test_rejects_mismatched_shapes(coords_shape, offsets_shape, flags_shape, weights_shape):
    with pytest.raises(ValueError, match="must"):
        flexible_dual_grid_to_mesh(
            torch.zeros(coords_shape, dtype=torch.int64),
            torch.zeros(offsets_shape),
            torch.zeros(flags_shape, dtype=torch.bool),
            torch.ones(weights_shape),
            resolution=8,
        )


def cube_with_open_quad(resolution: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The single-point cube with the two triangles of its first quad removed; also returns that quad's rows."""
    coords, flags = dual_grid_from_inside(box_inside(resolution, 1, 1))
    vertices, faces = extract(coords, flags, resolution)
    return vertices, faces[2:], quads_of(coords, flags)[0]


def test_fill_small_holes_closes_a_small_hole():
    vertices, faces, quad = cube_with_open_quad(resolution=256)  # hole perimeter 4 / 256 < 0.03
    assert not as_trimesh(vertices, faces).is_watertight
    filled_vertices, filled_faces = fill_small_holes(vertices, faces)
    assert filled_vertices.shape == (9, 3) and filled_faces.shape == (10 + 4, 3)
    torch.testing.assert_close(filled_vertices[:8], vertices)
    torch.testing.assert_close(filled_vertices[8], vertices[quad].mean(dim=0))
    mesh = as_trimesh(filled_vertices, filled_faces)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_fill_small_holes_leaves_large_holes():
    vertices, faces, _ = cube_with_open_quad(resolution=64)  # perimeter 4 / 64 > 0.03
    out_vertices, out_faces = fill_small_holes(vertices, faces)
    assert torch.equal(out_vertices, vertices) and torch.equal(out_faces, faces)
    out_vertices, out_faces = fill_small_holes(vertices, faces, max_perimeter=0.1)
    assert out_faces.shape == (14, 3) and as_trimesh(out_vertices, out_faces).is_watertight


def test_fill_small_holes_keeps_closed_meshes():
    coords, flags = dual_grid_from_inside(box_inside(256, 1, 2))
    vertices, faces = extract(coords, flags, 256)
    out_vertices, out_faces = fill_small_holes(vertices, faces)
    assert torch.equal(out_vertices, vertices) and torch.equal(out_faces, faces)
