"""Mesh clean-up, decimation, normals and the glTF axes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from know3d_cli.errors import GenerationError
from know3d_cli.export.mesh_ops import (
    compact,
    prepare_mesh,
    remove_bad_faces,
    remove_small_components,
    to_gltf_frame,
    vertex_normals,
)


def test_gltf_frame_turns_z_up_into_y_up():
    np.testing.assert_array_equal(to_gltf_frame(np.array([[1.0, 2.0, 3.0]])), [[1.0, 3.0, -2.0]])


def test_vertex_normals_point_out_of_a_sphere_and_isolated_vertices_get_plus_z():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    vertices = np.vstack([sphere.vertices, [[5.0, 5.0, 5.0]]])  # one vertex no face uses
    normals = vertex_normals(vertices, sphere.faces)
    assert normals.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    assert (np.einsum("vc,vc->v", normals[:-1], sphere.vertices) > 0.99).all()
    np.testing.assert_array_equal(normals[-1], [0.0, 0.0, 1.0])


def test_compact_drops_unused_vertices_and_remaps_faces():
    vertices = np.arange(15, dtype=np.float64).reshape(5, 3)
    faces = np.array([[4, 1, 3]])
    kept_vertices, kept_faces, kept = compact(vertices, faces)
    np.testing.assert_array_equal(kept, [1, 3, 4])
    np.testing.assert_array_equal(kept_vertices[kept_faces], vertices[faces])


def test_bad_faces_are_removed_and_the_rest_keep_their_order():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [0, 0, 1]], dtype=np.float64)
    faces = np.array([
        [0, 1, 4],  # kept
        [0, 1, 1],  # repeated corner
        [0, 1, 3],  # zero area (collinear)
        [0, 1, 2],  # kept
        [2, 0, 1],  # the same corners as the previous face
    ])
    np.testing.assert_array_equal(remove_bad_faces(vertices, faces), [[0, 1, 4], [0, 1, 2]])


def test_small_components_go_but_never_the_whole_mesh():
    big = trimesh.creation.icosphere(subdivisions=1)
    small = trimesh.creation.icosphere(subdivisions=1, radius=0.01)
    vertices = np.vstack([big.vertices, small.vertices + 3.0])
    faces = np.vstack([big.faces, small.faces + len(big.vertices)])
    np.testing.assert_array_equal(remove_small_components(vertices, faces, min_area=1.0), big.faces)
    np.testing.assert_array_equal(remove_small_components(vertices, faces, min_area=1e9), big.faces)  # largest kept


def test_prepare_mesh_decimates_to_the_target_and_refuses_an_empty_result():
    sphere = trimesh.creation.icosphere(subdivisions=4)  # 5120 faces
    vertices, faces = prepare_mesh(sphere.vertices, sphere.faces, target_faces=1000)
    assert 500 <= len(faces) <= 1000 and faces.max() < len(vertices)
    with pytest.raises(GenerationError, match="no faces"):
        prepare_mesh(sphere.vertices, np.zeros((0, 3), np.int64), 1000)
    with pytest.raises(GenerationError, match="degenerate"):
        prepare_mesh(sphere.vertices, np.array([[0, 0, 1], [2, 2, 2]]), 1000)
