"""OBJ (+ MTL + PBR textures) and PLY export: trimesh reads them back with glTF axes, outward winding, normals,
textures or vertex colours, and every format places the asset identically."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from know3d_cli.config import ExportConfig, ExportFormat, ExportOrigin
from know3d_cli.export import PREVIEW_FILE, TURNTABLE_FILE, encode_mesh, to_obj, to_ply
from know3d_cli.outputs import ASSET_FILES, check_asset_path

# base colour (0.2, 0.4, 0.6), metallic 0, roughness 1, alpha 0.6 -> RGBA bytes
PBR = (0.2, 0.4, 0.6, 0.0, 1.0, 0.6)
RGBA = (51, 102, 153, 153)
OBJ_FILES = ["model.obj", "model.mtl", "model_basecolor.png", "model_roughness.png", "model_metallic.png"]


def load(files: dict[str, bytes], name: str) -> trimesh.Trimesh:
    """`name` parsed by trimesh, its sidecar files (MTL, textures) served from `files`."""
    archive = {key: io.BytesIO(value) for key, value in files.items()}
    mesh = trimesh.load(io.BytesIO(files[name]), file_type=name.rsplit(".", 1)[1], process=False,
                        resolver=trimesh.resolvers.ZipResolver(archive))
    if isinstance(mesh, trimesh.Scene):
        (mesh,) = mesh.geometry.values()
    assert isinstance(mesh, trimesh.Trimesh)
    return mesh


@pytest.fixture(scope="module")
def blob(make_blob):
    """A small ball at TRELLIS.2 (0.1, 0.2, 0.3), which is glTF (0.1, 0.3, -0.2); every voxel carries PBR."""
    return make_blob(centre=(0.1, 0.2, 0.3), radius=0.12, pbr=PBR)


@pytest.fixture(scope="module")
def obj_files(blob) -> dict[str, bytes]:
    return to_obj(blob, ExportConfig(format=ExportFormat.obj, faces=100_000, texture_size=64,
                                     origin=ExportOrigin.center))


@pytest.mark.parametrize("file_type", ["obj", "ply"])
def test_round_trip_keeps_geometry_in_gltf_axes(blob, file_type):
    exported = encode_mesh(blob, ExportConfig(format=ExportFormat(file_type), faces=100_000, texture_size=64,
                                              origin=ExportOrigin.center))
    assert exported.model_file == f"model.{file_type}" and exported.extension == file_type
    mesh = load(exported.files, exported.model_file)
    assert (exported.vertices, exported.faces) == (len(mesh.vertices), len(mesh.faces))  # what the file holds
    if file_type == "obj":
        mesh.merge_vertices(merge_tex=True, merge_norm=True)  # UV seams split vertices
    assert mesh.faces.shape == tuple(blob.faces.shape)  # below the target: not decimated
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # the axis change is a rotation: faces still point out
    np.testing.assert_allclose(mesh.center_mass, 0.0, atol=0.01)  # origin=center
    outward = np.einsum("vc,vc->v", mesh.vertex_normals, mesh.vertices - mesh.center_mass)
    assert (outward > 0).all()


def test_obj_carries_uvs_and_an_mtl_with_the_pbr_textures(obj_files):
    assert list(obj_files) == OBJ_FILES
    text = obj_files["model.obj"].decode("utf-8")
    lines = text.splitlines()
    assert "mtllib model.mtl" in lines and "usemtl know3d_pbr" in lines
    n_vertices = sum(line.startswith("v ") for line in lines)
    assert sum(line.startswith("vt ") for line in lines) == sum(line.startswith("vn ") for line in lines) == n_vertices
    first_face = next(line for line in lines if line.startswith("f "))
    assert all(len(corner.split("/")) == 3 and all(corner.split("/")) for corner in first_face.split()[1:])
    mtl = obj_files["model.mtl"].decode("utf-8").splitlines()
    assert {"map_Kd model_basecolor.png", "map_Pr model_roughness.png", "map_Pm model_metallic.png"} <= set(mtl)
    assert not any(line.startswith("map_d") for line in mtl)  # alpha_mode OPAQUE

    base = np.asarray(Image.open(io.BytesIO(obj_files["model_basecolor.png"])))
    assert base.shape == (64, 64, 3)  # OPAQUE: no alpha channel a viewer could blend with
    assert (np.abs(base.reshape(-1, 3).astype(int) - RGBA[:3]).max(axis=1) <= 3).mean() > 0.9
    roughness = np.asarray(Image.open(io.BytesIO(obj_files["model_roughness.png"])))
    metallic = np.asarray(Image.open(io.BytesIO(obj_files["model_metallic.png"])))
    assert roughness.shape == metallic.shape == (64, 64)  # grey maps, as MTL's map_Pr / map_Pm expect
    assert np.median(roughness) == 255 and np.median(metallic) == 0

    mesh = load(obj_files, "model.obj")
    assert mesh.visual.kind == "texture" and mesh.visual.material.image.size == (64, 64)
    # OBJ's v runs bottom-up, glTF's top-down: the texel under each vertex is the same in both conventions
    texel = mesh.visual.material.to_color(mesh.visual.uv)
    np.testing.assert_allclose(np.median(texel[:, :3], axis=0), RGBA[:3], atol=2)


def test_obj_with_alpha_maps_the_base_colour_alpha(blob):
    files = to_obj(blob, ExportConfig(format=ExportFormat.obj, faces=100_000, texture_size=64, alpha_mode="BLEND",
                                      texture_format="webp"))
    assert list(files) == [name.replace(".png", ".webp") for name in OBJ_FILES]
    assert "map_d model_basecolor.webp" in files["model.mtl"].decode("utf-8").splitlines()
    base = Image.open(io.BytesIO(files["model_basecolor.webp"]))
    assert base.format == "WEBP" and base.mode == "RGBA"


def test_ply_carries_rgba_vertex_colours(blob):
    data = to_ply(blob, ExportConfig(format=ExportFormat.ply))
    header = data[: data.index(b"end_header")].decode("ascii")
    assert "format binary_little_endian" in header
    assert all(f"property uchar {channel}" in header for channel in ("red", "green", "blue", "alpha"))
    assert "property float nx" in header
    colours = load({"model.ply": data}, "model.ply").visual.vertex_colors
    assert (colours == RGBA).all()


@pytest.mark.parametrize("file_type", ["obj", "ply"])
def test_untextured_asset_has_no_colours(blob, file_type):
    plain = dataclasses.replace(blob, voxel_coords=None, voxel_attrs=None)
    exported = encode_mesh(plain, ExportConfig(format=ExportFormat(file_type)))
    assert list(exported.files) == ([f"model.{file_type}", "model.mtl"] if file_type == "obj" else ["model.ply"])
    data = exported.files[exported.model_file]
    if file_type == "obj":
        lines = data.decode("utf-8").splitlines()
        assert len(next(line for line in lines if line.startswith("v ")).split()) == 4
        assert not any(line.startswith("vt ") for line in lines)
        assert "//" in next(line for line in lines if line.startswith("f "))
        mtl = exported.files["model.mtl"].decode("utf-8").splitlines()
        assert "Kd 0.8 0.8 0.8" in mtl and not any(line.startswith("map_") for line in mtl)
    else:
        assert b"property uchar red" not in data[: data.index(b"end_header")]
        assert load(exported.files, exported.model_file).visual.kind is None


@pytest.mark.parametrize("file_type", ["obj", "ply"])
def test_decimation_meets_the_face_target(red_sphere, file_type):
    target = 500
    exported = encode_mesh(red_sphere, ExportConfig(format=ExportFormat(file_type), faces=target, texture_size=32))
    mesh = load(exported.files, exported.model_file)
    assert 0.8 * target <= mesh.faces.shape[0] <= target and exported.faces == mesh.faces.shape[0]
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    assert mesh.volume > 0


@pytest.mark.parametrize("origin, height", [(ExportOrigin.base, None), (ExportOrigin.center, 2.0)])
def test_glb_obj_and_ply_are_placed_identically(blob, origin, height):
    """The three formats of one asset have one bounding box: same axes, origin and scale."""
    boxes = {}
    for file_type in ExportFormat:
        cfg = ExportConfig(format=file_type, faces=1000, texture_size=32, origin=origin, height=height)
        exported = encode_mesh(blob, cfg)
        if file_type is ExportFormat.glb:
            gltf = pygltflib.GLTF2.load_from_bytes(exported.files["model.glb"])
            accessor = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
            boxes[file_type.value] = np.array([accessor.min, accessor.max])
        else:
            boxes[file_type.value] = load(exported.files, exported.model_file).bounds
        np.testing.assert_allclose(exported.bounds, boxes[file_type.value], atol=1e-5)
    np.testing.assert_allclose(boxes["obj"], boxes["glb"], atol=1e-5)
    np.testing.assert_allclose(boxes["ply"], boxes["glb"], atol=1e-5)
    lower, upper = boxes["glb"]
    np.testing.assert_allclose(lower[1] if origin is ExportOrigin.base else (lower[1] + upper[1]) / 2, 0.0, atol=1e-5)
    if height is not None:
        assert upper[1] - lower[1] == pytest.approx(height, rel=1e-5)


@pytest.mark.parametrize("override, key", [("export.origin=bottom", "export.origin"),
                                           ("export.height=0", "export.height"),
                                           ("export.height=-1.5", "export.height")])
def test_invalid_placement_settings_are_config_errors(override, key):
    from know3d_cli.config import load_config
    from know3d_cli.errors import ConfigError

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config([override])


@pytest.mark.parametrize("texture_format", ["png", "webp"])
def test_every_exported_file_is_one_the_output_folder_owns(blob, tmp_path, texture_format):
    """`outputs.check_asset_path` refuses to replace a folder holding files know3d did not write: each file an
    export (OBJ with its MTL and textures) or a preview writes must be one of its `ASSET_FILES`."""
    files = to_obj(blob, ExportConfig(format=ExportFormat.obj, faces=1000, texture_size=16,
                                      texture_format=texture_format))
    names = {*files, "model.glb", "model.ply", PREVIEW_FILE, TURNTABLE_FILE}
    assert len(files) == 5 and names <= ASSET_FILES
    folder = tmp_path / "asset"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"")
    check_asset_path(tmp_path, "asset")  # an earlier asset with every kind of file: replaceable
