"""OBJ and PLY export: trimesh reads them back with glTF axes, outward winding, normals and vertex colours."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import trimesh

from know3d_cli.config import ExportConfig, ExportFormat
from know3d_cli.export import encode_mesh, to_obj, to_ply

# base colour (0.2, 0.4, 0.6), metallic 0, roughness 1, alpha 0.6 -> RGBA bytes
PBR = (0.2, 0.4, 0.6, 0.0, 1.0, 0.6)
RGBA = (51, 102, 153, 153)


def load(data: bytes, file_type: str) -> trimesh.Trimesh:
    mesh = trimesh.load(io.BytesIO(data), file_type=file_type, process=False)
    assert isinstance(mesh, trimesh.Trimesh)
    return mesh


@pytest.fixture(scope="module")
def blob(make_blob):
    """A small ball at TRELLIS.2 (0.1, 0.2, 0.3), which is glTF (0.1, 0.3, -0.2); every voxel carries PBR."""
    return make_blob(centre=(0.1, 0.2, 0.3), radius=0.12, pbr=PBR)


@pytest.mark.parametrize("file_type", ["obj", "ply"])
def test_round_trip_keeps_geometry_in_gltf_axes(blob, file_type):
    encoded = encode_mesh(blob, ExportConfig(format=ExportFormat(file_type), faces=100_000))
    assert encoded.extension == file_type
    mesh = load(encoded.data, file_type)
    assert mesh.faces.shape == tuple(blob.faces.shape)  # below the target: not decimated
    assert (encoded.vertices, encoded.faces) == (len(mesh.vertices), len(mesh.faces))
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # the axis change is a rotation: faces still point out
    np.testing.assert_allclose(mesh.center_mass, (0.1, 0.3, -0.2), atol=0.01)
    outward = np.einsum("vc,vc->v", mesh.vertex_normals, mesh.vertices - mesh.center_mass)
    assert (outward > 0).all()


def test_obj_carries_rgb_vertex_colours(blob):
    text = to_obj(blob, ExportConfig(format=ExportFormat.obj)).decode("utf-8")
    first_vertex = next(line for line in text.splitlines() if line.startswith("v "))
    assert len(first_vertex.split()) == 7  # v x y z r g b
    assert any(line.startswith("vn ") for line in text.splitlines())
    colours = load(text.encode("utf-8"), "obj").visual.vertex_colors
    np.testing.assert_allclose(colours[:, :3], np.broadcast_to(RGBA[:3], (len(colours), 3)), atol=1)


def test_ply_carries_rgba_vertex_colours(blob):
    data = to_ply(blob, ExportConfig(format=ExportFormat.ply))
    header = data[: data.index(b"end_header")].decode("ascii")
    assert "format binary_little_endian" in header
    assert all(f"property uchar {channel}" in header for channel in ("red", "green", "blue", "alpha"))
    assert "property float nx" in header
    colours = load(data, "ply").visual.vertex_colors
    assert (colours == RGBA).all()


@pytest.mark.parametrize("file_type", ["obj", "ply"])
def test_untextured_asset_has_no_colours(blob, file_type):
    plain = dataclasses.replace(blob, voxel_coords=None, voxel_attrs=None)
    data = encode_mesh(plain, ExportConfig(format=ExportFormat(file_type))).data
    if file_type == "obj":
        first_vertex = next(line for line in data.decode("utf-8").splitlines() if line.startswith("v "))
        assert len(first_vertex.split()) == 4
    else:
        assert b"property uchar red" not in data[: data.index(b"end_header")]
    assert load(data, file_type).visual.kind is None


@pytest.mark.parametrize("file_type", ["obj", "ply"])
def test_decimation_meets_the_face_target(red_sphere, file_type):
    target = 500
    data = encode_mesh(red_sphere, ExportConfig(format=ExportFormat(file_type), faces=target)).data
    mesh = load(data, file_type)
    assert 0.8 * target <= mesh.faces.shape[0] <= target
    assert mesh.volume > 0
