"""Closest points on triangles (Voronoi regions) and on a mesh (nearest vertex, then its one-ring)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from know3d_cli.export.closest_point import ClosestPointQuery, closest_point_on_triangles


def _on_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    t = np.clip(np.dot(p - a, b - a) / np.dot(b - a, b - a), 0.0, 1.0)
    return a + t * (b - a)


def _reference(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """The nearest of: the plane projection when it falls inside the triangle, and the three edges' closest points."""
    a, b, c = tri
    normal = np.cross(b - a, c - a)
    projected = p - np.dot(p - a, normal) / np.dot(normal, normal) * normal
    inside = all(np.dot(np.cross(v1 - v0, projected - v0), normal) >= 0 for v0, v1 in ((a, b), (b, c), (c, a)))
    candidates = [_on_segment(p, a, b), _on_segment(p, b, c), _on_segment(p, c, a)] + ([projected] if inside else [])
    return min(candidates, key=lambda q: np.linalg.norm(q - p))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closest_point_on_triangles_matches_a_plain_reference_in_every_region(seed):
    rng = np.random.default_rng(seed)
    tri = rng.normal(size=(300, 3, 3))
    p = rng.normal(size=(300, 3)) * 2.0  # far and near points: vertex, edge and interior regions all occur
    got = closest_point_on_triangles(torch.from_numpy(p), torch.from_numpy(tri)).numpy()
    expected = np.stack([_reference(p[i], tri[i]) for i in range(len(p))])
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_points_on_the_triangle_are_their_own_closest_point():
    tri = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]], dtype=torch.float64).expand(4, 3, 3)
    p = torch.tensor([[0.2, 0.2, 0], [0, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0]], dtype=torch.float64)
    torch.testing.assert_close(closest_point_on_triangles(p, tri), p)


def test_mesh_query_finds_the_true_closest_point_near_a_sphere():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    query = ClosestPointQuery(sphere.vertices, sphere.faces)
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(200, 3))
    points = directions / np.linalg.norm(directions, axis=1, keepdims=True) * rng.uniform(0.9, 1.1, (200, 1))
    closest, face = query.query(points, chunk_size=64)  # several chunks
    everywhere = closest_point_on_triangles(  # brute force over every face
        torch.from_numpy(np.repeat(points, len(sphere.faces), axis=0)),
        torch.from_numpy(np.tile(sphere.vertices[sphere.faces], (len(points), 1, 1))),
    ).numpy().reshape(len(points), len(sphere.faces), 3)
    best = np.linalg.norm(everywhere - points[:, None], axis=2).min(axis=1)
    np.testing.assert_allclose(np.linalg.norm(closest - points, axis=1), best, atol=1e-5)
    on_face = closest_point_on_triangles(torch.from_numpy(closest).double(),
                                         torch.from_numpy(sphere.vertices[sphere.faces[face]])).numpy()
    np.testing.assert_allclose(on_face, closest, atol=1e-5)  # the returned face holds the returned point
