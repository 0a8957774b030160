"""Edge crossings against a brute-force line/triangle intersection, and the fill rule on shared edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from know3d_cli.data.grid_crossings import active_voxels, edge_crossings, key_voxels


def cross2(u: np.ndarray, v: np.ndarray) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


def brute_force(triangles: np.ndarray, resolution: int) -> list[tuple[int, int, int, int, float]]:
    """(axis, owner x, owner y, owner z, coordinate along the axis) of every line/triangle intersection."""
    out = []
    for axis in range(3):
        b, c = (axis + 1) % 3, (axis + 2) % 3
        for j in range(resolution + 1):
            for k in range(resolution + 1):
                for tri in triangles:
                    p = tri[:, [b, c]]
                    area = cross2(p[1] - p[0], p[2] - p[0])
                    if area == 0:
                        continue
                    w = np.array([cross2(p[(i + 2) % 3] - p[(i + 1) % 3], np.array([j, k]) - p[(i + 1) % 3])
                                  for i in range(3)]) / area
                    if (w < 0).any():
                        continue
                    along = float(w @ tri[:, axis])
                    owner = [0, 0, 0]
                    owner[axis], owner[b], owner[c] = int(np.floor(along)), j - 1, k - 1
                    if 0 <= owner[axis] < resolution:
                        out.append((axis, *owner, along))
    return sorted(out)


@pytest.mark.parametrize("chunk_size", [7, 1 << 20])
def test_crossings_match_brute_force(chunk_size):
    rng = np.random.default_rng(0)
    resolution = 6
    mesh = trimesh.creation.icosphere(1)
    mesh.apply_transform(trimesh.transformations.random_rotation_matrix(rng.random(3)))
    tri = (mesh.triangles * 0.45 + 0.5 + rng.uniform(-0.02, 0.02, 3)) * resolution
    expected = brute_force(tri, resolution)
    crossings = edge_crossings(torch.from_numpy(tri), resolution, chunk_size)
    got = sorted((int(a), *map(int, o), float(p)) for a, o, p in zip(crossings.axis, crossings.owner, crossings.along))
    points = crossings.points()
    rows = np.arange(crossings.num_crossings)
    axis = crossings.axis.numpy().astype(int)
    np.testing.assert_array_equal(points.numpy()[rows, axis], crossings.along.numpy())
    others = np.ones((rows.size, 3), dtype=bool)
    others[rows, axis] = False
    np.testing.assert_array_equal(points.numpy()[others], crossings.owner.numpy()[others] + 1.0)
    assert len(got) == len(expected) > 50
    assert [g[:4] for g in got] == [e[:4] for e in expected]
    np.testing.assert_allclose([g[4] for g in got], [e[4] for e in expected], atol=1e-9)


def test_shared_edges_through_lattice_points_are_crossed_once():
    # a square split along its diagonal, lying on integer lattice points: every line through the square's interior
    # must cross exactly one of the two triangles, also on the diagonal and at the shared corners
    quad = np.array([[0.5, 1.0, 1.0], [0.5, 4.0, 1.0], [0.5, 4.0, 4.0], [0.5, 1.0, 4.0]])
    tri = torch.from_numpy(quad[[[0, 1, 2], [0, 2, 3]]])
    lines = {}
    crossings = edge_crossings(tri, 6, 1 << 20)
    for a, o in zip(crossings.axis.tolist(), crossings.owner.tolist()):
        assert a == 0
        lines[(o[1], o[2])] = lines.get((o[1], o[2]), 0) + 1
    # lattice points (j, k) covered once each: a half-open rule keeps exactly one closed side per axis
    assert set(lines.values()) == {1}
    assert len(lines) == 9


def test_active_voxels_group_the_voxels_around_each_crossed_edge():
    tri = torch.tensor([[[0.2, 0.5, 0.5], [3.8, 0.5, 0.5], [0.2, 3.7, 3.6]]], dtype=torch.float64)
    crossings = edge_crossings(tri, 4, 1 << 20)
    active = active_voxels(crossings, 4)
    assert np.all(np.diff(active.keys) > 0) and np.all(np.diff(active.row) >= 0)
    voxels = key_voxels(active.keys, 4)
    assert ((voxels >= 0) & (voxels < 4)).all()
    # every entry's voxel is next to its crossing's owner, and owners (entry % 4 == 0) are the voxel itself
    owner = crossings.owner.numpy()[active.crossing]
    delta = voxels[active.row] - owner
    assert ((delta == 0) | (delta == 1)).all()
    assert (delta[active.entry % 4 == 0] == 0).all()
    assert np.unique(active.entry).size == active.entry.size
