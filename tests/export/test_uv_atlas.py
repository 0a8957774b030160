"""Charts by axis cone, and the packed UV atlas."""

from __future__ import annotations

import numpy as np
import trimesh

from know3d_cli.export.uv_atlas import chart_faces, unwrap_uv


def test_a_cube_makes_one_chart_per_side_with_its_axis_cone():
    cube = trimesh.creation.box()
    chart, cone = chart_faces(cube.vertices, cube.faces, smooth_iterations=0)
    assert len(np.unique(chart)) == 6 and len(np.unique(cone)) == 6
    axes = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    np.testing.assert_allclose(axes[cone], cube.face_normals, atol=1e-9)
    for side in np.unique(chart):
        assert len(np.unique(cone[chart == side])) == 1


def _signed_uv_areas(uvs: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = uvs[faces[:, 0]], uvs[faces[:, 1]], uvs[faces[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def test_the_atlas_keeps_every_face_in_order_without_folds_inside_the_unit_square():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    atlas = unwrap_uv(sphere.vertices, sphere.faces, texture_size=128)
    assert atlas.faces.shape == sphere.faces.shape
    np.testing.assert_array_equal(atlas.vmap[atlas.faces], sphere.faces)  # same faces, cut along seams
    assert atlas.uvs.min() >= 0.0 and atlas.uvs.max() <= 1.0
    assert atlas.num_charts >= 6 and len(atlas.vmap) > len(sphere.vertices)  # seams split vertices
    # No face folds over its chart (overlapping texels would bake twice). xatlas may mirror a whole chart when
    # packing, which a texture without normal maps does not notice, so only the sign per chart must agree.
    chart, _ = chart_faces(sphere.vertices, sphere.faces)
    area = _signed_uv_areas(atlas.uvs, atlas.faces)
    assert (area != 0).all()
    for index in np.unique(chart):
        assert len(np.unique(np.sign(area[chart == index]))) == 1, f"chart {index} folds"
