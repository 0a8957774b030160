"""GLB export round trips: structure, baked PBR textures, axes, placement, decimation, materials, config errors.

Every GLB written here also goes through the Khronos glTF validator (`validate_glb`, skipped without it).
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pygltflib
import pytest
import torch
import trimesh
from PIL import Image

from know3d_cli.config import ExportConfig, ExportFormat, ExportOrigin
from know3d_cli.errors import GenerationError
from know3d_cli.export import encode_mesh, to_glb
from know3d_cli.export.glb import place_export_mesh, prepare_export_mesh, write_glb
from know3d_cli.geometry import Asset3D

TEXTURE_SIZE = 128
RED_RGBA = (255, 0, 0, 255)
RED_METALLIC_ROUGHNESS = (0, 191, 64)  # (R, G, B) = (0, roughness 0.75, metallic 0.25)
WEBP_TOLERANCE = 8  # lossy WebP on flat colour
INPAINT_DRIFT = 24  # OpenCV's Telea inpainting creeps upwards by up to ~18 levels on flat colour


def textured_config(texture_format: str, **overrides) -> ExportConfig:
    return ExportConfig(faces=2000, texture_size=TEXTURE_SIZE, texture_format=texture_format, **overrides)


@pytest.fixture(scope="module")
def textured_glbs(red_sphere) -> dict[str, tuple[bytes, dict[str, float]]]:
    """The red sphere exported once per texture format: {format: (GLB bytes, timings)}."""
    out = {}
    for texture_format in ("png", "webp"):
        timings: dict[str, float] = {}
        out[texture_format] = (to_glb(red_sphere, textured_config(texture_format), timings), timings)
    return out


def accessor_array(gltf: pygltflib.GLTF2, index: int) -> np.ndarray:
    """(count, width) array of an accessor in the binary chunk."""
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    dtype = {pygltflib.FLOAT: np.float32, pygltflib.UNSIGNED_INT: np.uint32}[accessor.componentType]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[accessor.type]
    offset = (view.byteOffset or 0) + (accessor.byteOffset or 0)
    flat = np.frombuffer(gltf.binary_blob(), dtype=dtype, count=accessor.count * width, offset=offset)
    return flat.reshape(accessor.count, width)


def primitive_arrays(gltf: pygltflib.GLTF2) -> dict[str, np.ndarray]:
    """positions (V, 3), normals (V, 3), faces (F, 3) and, if present, texcoords (V, 2) of the only primitive."""
    (mesh,) = gltf.meshes
    (primitive,) = mesh.primitives
    arrays = {
        "positions": accessor_array(gltf, primitive.attributes.POSITION),
        "normals": accessor_array(gltf, primitive.attributes.NORMAL),
        "faces": accessor_array(gltf, primitive.indices).reshape(-1, 3).astype(np.int64),
    }
    if primitive.attributes.TEXCOORD_0 is not None:
        arrays["texcoords"] = accessor_array(gltf, primitive.attributes.TEXCOORD_0)
    return arrays


def texture_image(gltf: pygltflib.GLTF2, texture_index: int) -> np.ndarray:
    """Decoded (H, W, C) uint8 pixels of a texture's image (via EXT_texture_webp if used), checked against its MIME."""
    texture = gltf.textures[texture_index]
    source = texture.source if texture.source is not None else texture.extensions["EXT_texture_webp"]["source"]
    image = gltf.images[source]
    view = gltf.bufferViews[image.bufferView]
    start = view.byteOffset or 0
    data = gltf.binary_blob()[start:start + view.byteLength]
    decoded = Image.open(io.BytesIO(data))
    assert image.mimeType == f"image/{decoded.format.lower()}"
    return np.asarray(decoded)


def texels_at_face_centres(
    image: np.ndarray, texcoords: np.ndarray, faces: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Texel under each face's UV centroid (glTF UVs: v = 0 is the image's top row).

    Returns:
        texels: (F, C) uint8; covered: (F,) bool, whether the face covers that texel's centre. Faces smaller than a
        texel may cover none; their centroid texel holds inpainted values or another face's.
    """
    uv = texcoords[faces].astype(np.float64)  # (F, 3, 2)
    size = np.array([image.shape[1], image.shape[0]])
    col, row = np.clip((uv.mean(axis=1) * size).astype(np.int64), 0, size - 1).T
    centre = (np.stack([col, row], axis=1) + 0.5) / size  # (F, 2) texel centre in UV units
    a, b, c = uv[:, 0], uv[:, 1], uv[:, 2]
    area = cross2(b - a, c - a)
    w1, w2 = cross2(centre - a, c - a) / area, cross2(b - a, centre - a) / area
    inside = (w1 >= 0) & (w2 >= 0) & (w1 + w2 <= 1)
    return image[row, col], inside


def cross2(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]


@pytest.mark.parametrize("texture_format", ["png", "webp"])
def test_textured_glb_structure(textured_glbs, texture_format, validate_glb):
    data, timings = textured_glbs[texture_format]
    assert data[:4] == b"glTF"
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    arrays = primitive_arrays(gltf)
    n_vertices = arrays["positions"].shape[0]
    assert arrays["normals"].shape == (n_vertices, 3) and arrays["texcoords"].shape == (n_vertices, 2)
    assert arrays["faces"].max() < n_vertices
    np.testing.assert_allclose(np.linalg.norm(arrays["normals"], axis=1), 1.0, atol=1e-5)
    assert arrays["texcoords"].min() >= 0.0 and arrays["texcoords"].max() <= 1.0

    assert len(gltf.images) == 2 and len(gltf.textures) == 2
    assert {image.mimeType for image in gltf.images} == {f"image/{texture_format}"}
    if texture_format == "webp":
        assert gltf.extensionsUsed == ["EXT_texture_webp"] and gltf.extensionsRequired == ["EXT_texture_webp"]
        assert all(texture.source is None for texture in gltf.textures)
    else:
        assert not gltf.extensionsUsed and not gltf.extensionsRequired
    (material,) = gltf.materials
    pbr = material.pbrMetallicRoughness
    assert pbr.baseColorFactor == [1.0, 1.0, 1.0, 1.0] and pbr.metallicFactor == 1.0 and pbr.roughnessFactor == 1.0
    base_color = texture_image(gltf, pbr.baseColorTexture.index)
    metallic_roughness = texture_image(gltf, pbr.metallicRoughnessTexture.index)
    assert base_color.shape == (TEXTURE_SIZE, TEXTURE_SIZE, 4)
    assert metallic_roughness.shape == (TEXTURE_SIZE, TEXTURE_SIZE, 3)
    expected_steps = {"decimate", "uv_unwrap", "surface_index", "rasterize", "closest_point", "grid_sample", "encode"}
    assert expected_steps <= set(timings)
    validate_glb(data)


@pytest.mark.parametrize("texture_format", ["png", "webp"])
def test_baked_textures_hold_the_voxel_attributes(textured_glbs, texture_format):
    gltf = pygltflib.GLTF2.load_from_bytes(textured_glbs[texture_format][0])
    arrays = primitive_arrays(gltf)
    pbr = gltf.materials[0].pbrMetallicRoughness
    base_color = texture_image(gltf, pbr.baseColorTexture.index)
    metallic_roughness = texture_image(gltf, pbr.metallicRoughnessTexture.index)
    tolerance = 0 if texture_format == "png" else WEBP_TOLERANCE
    texels, covered = texels_at_face_centres(base_color, arrays["texcoords"], arrays["faces"])
    assert covered.mean() > 0.9
    np.testing.assert_allclose(texels[covered], np.broadcast_to(RED_RGBA, texels[covered].shape), atol=tolerance)
    texels, covered = texels_at_face_centres(metallic_roughness, arrays["texcoords"], arrays["faces"])
    expected = np.broadcast_to(RED_METALLIC_ROUGHNESS, texels[covered].shape)
    np.testing.assert_allclose(texels[covered], expected, atol=tolerance)
    # Telea inpainting fills every texel between charts, though it drifts a little even from flat colour
    np.testing.assert_allclose(base_color.reshape(-1, 4), np.broadcast_to(RED_RGBA, (TEXTURE_SIZE**2, 4)),
                               atol=INPAINT_DRIFT)
    np.testing.assert_allclose(metallic_roughness.reshape(-1, 3),
                               np.broadcast_to(RED_METALLIC_ROUGHNESS, (TEXTURE_SIZE**2, 3)), atol=INPAINT_DRIFT)


def test_texture_follows_the_surface(make_blob, validate_glb):
    """Voxels above z = 0 (TRELLIS.2) are red, below blue: faces at glTF +y must read red, at -y blue."""
    asset = make_blob()
    above = (asset.voxel_coords[:, 2].float() + 0.5) / asset.resolution - 0.5 > 0
    attrs = asset.voxel_attrs.clone()
    attrs[~above, 0:3] = torch.tensor([0.0, 0.0, 1.0])
    asset = dataclasses.replace(asset, voxel_attrs=attrs)
    data = to_glb(asset, ExportConfig(faces=1000, texture_size=256, texture_format="png", origin=ExportOrigin.center))
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    arrays = primitive_arrays(gltf)
    base_color = texture_image(gltf, gltf.materials[0].pbrMetallicRoughness.baseColorTexture.index)
    texels, covered = texels_at_face_centres(base_color, arrays["texcoords"], arrays["faces"])
    height = arrays["positions"][arrays["faces"]].mean(axis=1)[:, 1]  # the ball's centre is at the origin
    assert (texels[covered & (height > 0.05), :3] == (255, 0, 0)).all()
    assert (texels[covered & (height < -0.05), :3] == (0, 0, 255)).all()
    validate_glb(data)


@pytest.mark.parametrize("textured", [True, False])
def test_axes_follow_gltf_y_up(make_blob, textured, validate_glb):
    """TRELLIS.2 (x, y, z) -> glTF (x, z, -y): +z becomes +y and +y becomes -z (before placement)."""
    asset = make_blob(centre=(0.1, 0.2, 0.3), radius=0.12, pbr=(0.5, 0.5, 0.5, 0.0, 1.0, 1.0) if textured else None)
    cfg = ExportConfig(faces=1000, texture_size=64, texture_format="png")
    data = write_glb(prepare_export_mesh(asset, cfg), cfg)
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    arrays = primitive_arrays(gltf)
    mesh = trimesh.Trimesh(arrays["positions"], arrays["faces"], process=False)
    mesh.merge_vertices()  # UV seams split vertices; merge to measure the closed surface
    assert mesh.is_watertight
    assert mesh.volume > 0  # the axis change is a rotation: winding stays outward
    np.testing.assert_allclose(mesh.center_mass, (0.1, 0.3, -0.2), atol=0.01)
    outward = np.einsum("vc,vc->v", arrays["normals"], arrays["positions"] - mesh.center_mass)
    assert (outward > 0).all()
    position = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    np.testing.assert_allclose(position.min, arrays["positions"].min(axis=0))
    np.testing.assert_allclose(position.max, arrays["positions"].max(axis=0))
    validate_glb(data)


@pytest.mark.parametrize("target, textured", [(300, False), (1000, True)])
def test_decimation_meets_the_face_target(red_sphere, target, textured, validate_glb):
    asset = red_sphere if textured else dataclasses.replace(red_sphere, voxel_coords=None, voxel_attrs=None)
    assert asset.faces.shape[0] > 4 * target
    data = to_glb(asset, ExportConfig(faces=target, texture_size=64, texture_format="webp"))
    faces = primitive_arrays(pygltflib.GLTF2.load_from_bytes(data))["faces"]
    assert 0.8 * target <= faces.shape[0] <= target
    validate_glb(data)


def test_small_mesh_is_not_decimated(red_sphere, validate_glb):
    asset = dataclasses.replace(red_sphere, voxel_coords=None, voxel_attrs=None)
    data = to_glb(asset, ExportConfig(faces=1_000_000))
    faces = primitive_arrays(pygltflib.GLTF2.load_from_bytes(data))["faces"]
    assert faces.shape[0] == asset.faces.shape[0]
    validate_glb(data)


def test_untextured_asset_gets_the_neutral_material(red_sphere, validate_glb):
    asset = dataclasses.replace(red_sphere, voxel_coords=None, voxel_attrs=None)
    assert not asset.textured
    data = to_glb(asset, ExportConfig(faces=2000, texture_format="webp", alpha_mode="BLEND"))
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    assert not gltf.images and not gltf.textures and not gltf.samplers and not gltf.extensionsUsed
    assert "texcoords" not in primitive_arrays(gltf)
    (material,) = gltf.materials
    pbr = material.pbrMetallicRoughness
    assert pbr.baseColorTexture is None and pbr.metallicRoughnessTexture is None
    np.testing.assert_allclose(pbr.baseColorFactor, (0.8, 0.8, 0.8, 1.0))
    assert pbr.metallicFactor == 0.0 and pbr.roughnessFactor == pytest.approx(0.7)
    assert material.alphaMode == "OPAQUE"  # nothing to blend without an alpha texture
    validate_glb(data)


@pytest.mark.parametrize("alpha_mode, double_sided", [("OPAQUE", False), ("BLEND", True), ("MASK", False)])
def test_alpha_mode_and_double_sided_are_written(red_sphere, alpha_mode, double_sided, validate_glb):
    cfg = ExportConfig(faces=1000, texture_size=64, texture_format="png", alpha_mode=alpha_mode,
                       double_sided=double_sided)
    data = to_glb(red_sphere, cfg)
    (material,) = pygltflib.GLTF2.load_from_bytes(data).materials
    assert material.alphaMode == alpha_mode and material.doubleSided is double_sided
    assert material.alphaCutoff == (0.5 if alpha_mode == "MASK" else None)
    validate_glb(data)


def test_trimesh_reads_the_pbr_material(textured_glbs):
    scene = trimesh.load(io.BytesIO(textured_glbs["webp"][0]), file_type="glb")
    (mesh,) = scene.geometry.values()
    material = mesh.visual.material
    assert isinstance(material, trimesh.visual.material.PBRMaterial)
    assert material.baseColorTexture.size == (TEXTURE_SIZE, TEXTURE_SIZE)
    assert material.metallicRoughnessTexture.size == (TEXTURE_SIZE, TEXTURE_SIZE)
    assert mesh.visual.uv.shape == (mesh.vertices.shape[0], 2)
    assert mesh.volume == pytest.approx(4.0 / 3.0 * np.pi * 0.35**3, rel=0.03)


def test_encode_mesh_dispatches_glb(red_sphere, textured_glbs):
    encoded = encode_mesh(red_sphere, textured_config("png", format=ExportFormat.glb))
    assert encoded.extension == "glb" and list(encoded.files) == ["model.glb"]
    assert encoded.data == textured_glbs["png"][0]  # same bytes: export is deterministic
    mesh = trimesh.load(io.BytesIO(encoded.data), file_type="glb", force="mesh", process=False)
    assert (encoded.vertices, encoded.faces) == (len(mesh.vertices), len(mesh.faces))  # what the file holds


@pytest.mark.parametrize("origin, height", [(ExportOrigin.base, None), (ExportOrigin.center, None),
                                            (ExportOrigin.base, 1.8), (ExportOrigin.center, 0.25)])
def test_placement_puts_the_asset_on_the_ground_at_its_height(make_blob, origin, height, validate_glb):
    """`export.origin=base` stands the asset on y = 0 centred in x and z; `center` centres it; `export.height` sets
    its bounding-box height in metres (TRELLIS.2's unit-cube size without it)."""
    asset = make_blob(centre=(0.1, 0.2, 0.3), radius=0.12)
    cfg = ExportConfig(faces=1000, texture_size=64, origin=origin, height=height)
    exported = encode_mesh(asset, cfg)
    positions = primitive_arrays(pygltflib.GLTF2.load_from_bytes(exported.data))["positions"]
    lower, upper = positions.min(axis=0), positions.max(axis=0)
    unplaced = prepare_export_mesh(asset, cfg).positions
    natural = unplaced.max(axis=0) - unplaced.min(axis=0)
    expected_height = natural[1] if height is None else height
    np.testing.assert_allclose(upper[1] - lower[1], expected_height, rtol=1e-5)
    np.testing.assert_allclose((upper - lower)[[0, 2]], natural[[0, 2]] * expected_height / natural[1], rtol=1e-5)
    centre = (lower + upper) / 2
    np.testing.assert_allclose(centre[[0, 2]], 0.0, atol=1e-6)
    np.testing.assert_allclose(lower[1] if origin is ExportOrigin.base else centre[1], 0.0, atol=1e-6)
    np.testing.assert_allclose(exported.bounds, [lower, upper], atol=1e-6)
    assert exported.placement.scale == pytest.approx(expected_height / natural[1])
    validate_glb(exported.data)


def test_height_of_a_flat_mesh_is_a_generation_error(make_blob):
    mesh = prepare_export_mesh(make_blob(pbr=None), ExportConfig(faces=1000))
    flat = dataclasses.replace(mesh, positions=mesh.positions * np.array([1.0, 0.0, 1.0], np.float32))
    with pytest.raises(GenerationError, match="export.height"):
        place_export_mesh(flat, ExportConfig(height=2.0))


def test_mesh_without_faces_raises(red_sphere):
    empty = Asset3D(red_sphere.vertices, torch.zeros(0, 3, dtype=torch.int64), "ss", red_sphere.resolution)
    with pytest.raises(GenerationError, match="no faces"):
        to_glb(empty, ExportConfig())
