"""Asset loading: formats, flattening, the TRELLIS.2 normalisation and axis turn, and every failure reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from trimesh.visual.material import PBRMaterial, SimpleMaterial

from know3d_cli.config import AssetConfig
from know3d_cli.data import ASSET_FAILURES, NORMALISED_SIDE, load_asset
from know3d_cli.errors import AssetError, InputError

from .conftest import BOX_COLORS, colored_box, gradient_texture, textured_quad


def test_glb_is_normalised_to_the_unit_cube_and_turned_z_up(write_asset):
    box = trimesh.creation.box((0.2, 4.0, 1.0))  # tallest along glTF's up axis (y)
    box.apply_translation((10.0, -3.0, 2.0))
    asset = load_asset(write_asset(box, "box.glb"), AssetConfig())
    lo, hi = asset.vertices.min(axis=0), asset.vertices.max(axis=0)
    np.testing.assert_allclose((hi + lo) / 2, 0.0, atol=1e-6)
    np.testing.assert_allclose(hi - lo, np.array([0.2, 1.0, 4.0]) / 4.0 * NORMALISED_SIDE, rtol=1e-5)  # y -> z
    assert asset.vertices.min() >= -0.5 and asset.vertices.max() <= 0.5
    np.testing.assert_allclose(asset.center, [10.0, -2.0, -3.0], atol=1e-6)  # (x, -z, y) of the glTF centre
    assert asset.scale == pytest.approx(NORMALISED_SIDE / 4.0)
    # the turn is a rotation: outward normals stay outward
    mesh = trimesh.Trimesh(asset.vertices, asset.faces)
    assert mesh.volume > 0


def test_ply_keeps_its_axes_and_vertex_colors(write_asset):
    box = colored_box(BOX_COLORS, extents=(1.0, 1.0, 3.0))
    asset = load_asset(write_asset(box, "box.ply"), AssetConfig())
    extent = asset.vertices.max(axis=0) - asset.vertices.min(axis=0)
    assert extent.argmax() == 2  # z stays up for PLY, as Blender imports it
    assert asset.vertex_colors is not None and asset.uv is None
    top = (asset.vertices[asset.faces, 2] > 0.49).all(axis=1)  # the faces of the +z side
    np.testing.assert_allclose(asset.vertex_colors[asset.faces[top]].reshape(-1, 4), [[0, 0, 1, 1]] * 6)  # blue


def test_textured_glb_keeps_material_texture_and_uvs(write_asset):
    quad = textured_quad(gradient_texture(), metallicFactor=0.25, roughnessFactor=0.5,
                         baseColorFactor=[255, 128, 255, 255])
    asset = load_asset(write_asset(quad, "quad.glb"), AssetConfig())
    (material,) = asset.materials
    assert material.base_color_texture.shape == (64, 64, 4)
    assert material.metallic_factor == pytest.approx(0.25) and material.roughness_factor == pytest.approx(0.5)
    assert material.base_color_factor == pytest.approx((1.0, 128 / 255, 1.0, 1.0))
    assert asset.uv.shape == (4, 2)
    # uv (0, 0) sits at the corner with the lowest x and (after the turn) the lowest z
    corner = np.argmin(asset.vertices[:, 0] + asset.vertices[:, 2])
    np.testing.assert_allclose(asset.uv[corner], [0.0, 0.0], atol=1e-6)


def test_large_textures_are_downscaled(write_asset):
    quad = textured_quad(gradient_texture(64))
    asset = load_asset(write_asset(quad, "quad.glb"), AssetConfig(max_texture_side=16))
    assert asset.materials[0].base_color_texture.shape == (16, 16, 4)


def test_scene_instances_are_flattened_with_their_transforms(write_asset):
    scene = trimesh.Scene()
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    for node, x in (("a", -2.0), ("b", 2.0)):
        scene.add_geometry(box, node_name=node, geom_name="box",
                           transform=trimesh.transformations.translation_matrix((x, 0.0, 0.0)))
    asset = load_asset(write_asset(scene, "two.glb"), AssetConfig())
    assert asset.num_faces == 24
    extent = asset.vertices.max(axis=0) - asset.vertices.min(axis=0)
    np.testing.assert_allclose(extent, np.array([5.0, 1.0, 1.0]) / 5.0 * NORMALISED_SIDE, rtol=1e-5)


def test_obj_with_mtl_gets_a_non_metallic_pbr_material(tmp_path):
    box = trimesh.creation.box()
    box.visual = trimesh.visual.TextureVisuals(uv=np.zeros((8, 2)), material=SimpleMaterial(diffuse=[200, 20, 20, 255]))
    path = tmp_path / "box.obj"
    box.export(path)
    asset = load_asset(path, AssetConfig())
    (material,) = asset.materials
    assert material.metallic_factor == 0.0
    assert material.base_color_factor[0] == pytest.approx(200 / 255, abs=0.01)


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize(
    ("name", "content", "cfg", "reason"),
    [
        ("asset.fbx", "whatever", AssetConfig(), "unsupported_format"),
        ("garbage.glb", b"glTF\x02\x00\x00\x00garbage", AssetConfig(), "unreadable"),
        ("points.ply", "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
                       "end_header\n0 0 0\n1 1 1\n", AssetConfig(), "no_faces"),
        ("nan.obj", "v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n", AssetConfig(), "non_finite"),
        ("huge.obj", "v 0 0 0\nv 1e9 0 0\nv 0 1 0\nf 1 2 3\n", AssetConfig(), "bad_extent"),
        ("dot.obj", "v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n", AssetConfig(), "bad_extent"),
        ("tri.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\n", AssetConfig(max_faces=1),
         "too_many_faces"),
        ("big.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n" + "# padding\n" * 200, AssetConfig(max_file_mb=0.001),
         "too_large"),
    ],
)
def test_bad_assets_fail_with_one_line_and_a_reason(tmp_path, name, content, cfg, reason):
    path = _write(tmp_path, name, content)
    with pytest.raises(AssetError) as info:
        load_asset(path, cfg)
    error = info.value
    assert error.reason == reason and reason in ASSET_FAILURES
    assert isinstance(error, InputError) and error.exit_code == 3 and error.code == "bad_asset"
    message = str(error)
    assert "\n" not in message and str(path) in message


def test_missing_and_empty_assets(tmp_path):
    with pytest.raises(AssetError) as info:
        load_asset(tmp_path / "nope.glb", AssetConfig())
    assert info.value.reason == "missing"
    empty = _write(tmp_path, "empty.gltf", '{"asset": {"version": "2.0"}, "scenes": [{"nodes": []}], "scene": 0}')
    with pytest.raises(AssetError) as info:
        load_asset(empty, AssetConfig())
    assert info.value.reason == "empty"


def test_part_without_material_gets_the_toolkit_default(write_asset):
    mesh = trimesh.creation.icosphere(1)
    mesh.visual = trimesh.visual.TextureVisuals(material=PBRMaterial())
    plain = trimesh.creation.box()
    scene = trimesh.Scene([mesh, plain])
    asset = load_asset(write_asset(scene, "mixed.glb"), AssetConfig())
    assert len(asset.materials) >= 1
    assert asset.face_materials.shape == (asset.num_faces,)
