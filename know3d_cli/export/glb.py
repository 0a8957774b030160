"""GLB writer: Asset3D -> binary glTF 2.0 with a PBR material (TRELLIS.2 `to_glb` on CPU, spec §1.9).

Textured assets go through: clean-up and decimation to `cfg.faces` -> UV atlas -> texture bake from the
high-resolution mesh and the voxel volume -> inpainted seams -> glTF metallic-roughness material. Untextured assets
get a neutral grey material. The mesh is then placed (`export.origin`, `export.height`, see `placement.py`). The
result passes the Khronos glTF validator with no errors. Textures are PNG by default, which every glTF loader must
read; WebP ones use `EXT_texture_webp`, declared used and required, with no PNG fallback (a loader without WebP
refuses the file rather than showing it untextured).
"""

from __future__ import annotations

import dataclasses
import io
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pygltflib
from PIL import Image

from ..config import AlphaMode, ExportConfig, TextureFormat
from ..geometry import Asset3D
from .bake import SurfaceAttributes, bake_pbr_textures
from .mesh_ops import decimate_asset, to_gltf_frame, vertex_normals
from .placement import Placement, placement_for
from ..timing import timed
from .uv_atlas import unwrap_uv

logger = logging.getLogger(__name__)

NEUTRAL_BASE_COLOR = (0.8, 0.8, 0.8, 1.0)
NEUTRAL_ROUGHNESS = 0.7
WEBP_QUALITY = 90

_FLOAT = pygltflib.FLOAT
_UINT32 = pygltflib.UNSIGNED_INT
_ARRAY_BUFFER = pygltflib.ARRAY_BUFFER
_ELEMENT_ARRAY_BUFFER = pygltflib.ELEMENT_ARRAY_BUFFER


@dataclass(frozen=True)
class ExportMesh:
    """A mesh ready to write, already in the glTF frame (Y up)."""

    positions: np.ndarray  # (V, 3) float32
    normals: np.ndarray  # (V, 3) float32 unit
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    texcoords: Optional[np.ndarray] = None  # (V, 2) float32, glTF convention (v = 0 is the image's top row)
    base_color: Optional[np.ndarray] = None  # (S, S, 4) uint8 RGBA
    metallic_roughness: Optional[np.ndarray] = None  # (S, S, 3) uint8, (R, G, B) = (0, roughness, metallic)


def to_glb(asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None) -> bytes:
    """Encode an asset as GLB bytes (never touches disk).

    Args:
        asset: mesh in TRELLIS.2's frame, optionally with a PBR voxel volume.
        cfg: export settings (faces, texture_size, texture_format, alpha_mode, double_sided, origin, height).
        timings: if given, seconds per step are added to it ("decimate", "uv_unwrap", "surface_index",
            "rasterize", "closest_point", "grid_sample", "inpaint", "encode").

    Returns:
        The .glb file content.
    """
    return glb_and_mesh(asset, cfg, timings)[0]


def glb_and_mesh(
    asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None
) -> tuple[bytes, ExportMesh]:
    """`to_glb`, also handing back the placed mesh it wrote (for its vertex and face counts)."""
    mesh, _ = place_export_mesh(prepare_export_mesh(asset, cfg, timings), cfg)
    with timed(timings, "encode"):
        return write_glb(mesh, cfg), mesh


def prepare_export_mesh(
    asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None
) -> ExportMesh:
    """Decimate, unwrap and bake (textured) or just decimate (untextured); convert to the glTF frame (not placed:
    TRELLIS.2's coordinates, see `place_export_mesh`)."""
    hi_vertices, hi_faces, vertices, faces = decimate_asset(asset, cfg.faces, timings)
    if not asset.textured:
        normals = vertex_normals(vertices, faces)
        return ExportMesh(
            positions=to_gltf_frame(vertices).astype(np.float32),
            normals=to_gltf_frame(normals).astype(np.float32),
            faces=faces,
        )

    with timed(timings, "uv_unwrap"):
        atlas = unwrap_uv(vertices, faces, cfg.texture_size)
    with timed(timings, "surface_index"):
        surface = SurfaceAttributes.of(asset, hi_vertices, hi_faces)
    positions = vertices[atlas.vmap]
    base_color, metallic_roughness = bake_pbr_textures(surface, positions, atlas, cfg.texture_size, timings)
    normals = vertex_normals(vertices, faces)[atlas.vmap]  # smooth across UV seams
    texcoords = np.stack([atlas.uvs[:, 0], 1.0 - atlas.uvs[:, 1]], axis=1).astype(np.float32)
    return ExportMesh(
        positions=to_gltf_frame(positions).astype(np.float32),
        normals=to_gltf_frame(normals).astype(np.float32),
        faces=atlas.faces,
        texcoords=texcoords,
        base_color=base_color,
        metallic_roughness=metallic_roughness,
    )


def place_export_mesh(mesh: ExportMesh, cfg: ExportConfig) -> tuple[ExportMesh, Placement]:
    """The mesh moved and scaled as `export.origin` and `export.height` ask (normals are unchanged)."""
    placement = placement_for(mesh.positions, cfg.origin, cfg.height)
    return dataclasses.replace(mesh, positions=placement.apply(mesh.positions)), placement


def write_glb(mesh: ExportMesh, cfg: ExportConfig) -> bytes:
    """Serialise an `ExportMesh` as GLB with one node, one mesh, one primitive and one material."""
    builder = _BufferBuilder()
    gltf = pygltflib.GLTF2(asset=pygltflib.Asset(version="2.0", generator="know3d"))
    attributes = pygltflib.Attributes()
    attributes.POSITION = builder.accessor(gltf, mesh.positions.astype(np.float32), "VEC3", _ARRAY_BUFFER, bounds=True)
    attributes.NORMAL = builder.accessor(gltf, mesh.normals.astype(np.float32), "VEC3", _ARRAY_BUFFER)
    textured = mesh.texcoords is not None and mesh.base_color is not None and mesh.metallic_roughness is not None
    if textured:
        attributes.TEXCOORD_0 = builder.accessor(gltf, mesh.texcoords.astype(np.float32), "VEC2", _ARRAY_BUFFER)
    indices = builder.accessor(
        gltf, mesh.faces.reshape(-1).astype(np.uint32), "SCALAR", _ELEMENT_ARRAY_BUFFER
    )

    if textured:
        gltf.samplers.append(
            pygltflib.Sampler(
                magFilter=pygltflib.LINEAR,
                minFilter=pygltflib.LINEAR_MIPMAP_LINEAR,
                wrapS=pygltflib.CLAMP_TO_EDGE,
                wrapT=pygltflib.CLAMP_TO_EDGE,
            )
        )
        base_tex = _add_texture(gltf, builder, mesh.base_color, cfg.texture_format)
        mr_tex = _add_texture(gltf, builder, mesh.metallic_roughness, cfg.texture_format)
        pbr = pygltflib.PbrMetallicRoughness(
            baseColorFactor=[1.0, 1.0, 1.0, 1.0],
            metallicFactor=1.0,
            roughnessFactor=1.0,
            baseColorTexture=pygltflib.TextureInfo(index=base_tex),
            metallicRoughnessTexture=pygltflib.TextureInfo(index=mr_tex),
        )
        alpha_mode = cfg.alpha_mode
        if cfg.texture_format == TextureFormat.webp:
            gltf.extensionsUsed = ["EXT_texture_webp"]
            gltf.extensionsRequired = ["EXT_texture_webp"]
    else:
        pbr = pygltflib.PbrMetallicRoughness(
            baseColorFactor=list(NEUTRAL_BASE_COLOR), metallicFactor=0.0, roughnessFactor=NEUTRAL_ROUGHNESS
        )
        alpha_mode = AlphaMode.OPAQUE  # no alpha to blend or mask
    gltf.materials.append(
        pygltflib.Material(
            name="know3d_pbr",
            pbrMetallicRoughness=pbr,
            alphaMode=str(alpha_mode),
            alphaCutoff=0.5 if alpha_mode == AlphaMode.MASK else None,
            doubleSided=bool(cfg.double_sided),
        )
    )
    gltf.meshes.append(
        pygltflib.Mesh(
            name="asset",
            primitives=[
                pygltflib.Primitive(attributes=attributes, indices=indices, material=0, mode=pygltflib.TRIANGLES)
            ],
        )
    )
    gltf.nodes.append(pygltflib.Node(name="asset", mesh=0))
    gltf.scenes.append(pygltflib.Scene(nodes=[0]))
    gltf.scene = 0
    blob = builder.blob()
    gltf.buffers.append(pygltflib.Buffer(byteLength=len(blob)))
    gltf.set_binary_blob(blob)
    return b"".join(gltf.save_to_bytes())


def encode_image(image: np.ndarray, texture_format: TextureFormat) -> bytes:
    """(H, W, 3|4) uint8 -> WebP (lossy, alpha lossless) or PNG bytes."""
    buffer = io.BytesIO()
    pil = Image.fromarray(np.ascontiguousarray(image))
    if texture_format == TextureFormat.webp:
        pil.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
    else:
        pil.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _add_texture(
    gltf: pygltflib.GLTF2, builder: "_BufferBuilder", image: np.ndarray, texture_format: TextureFormat
) -> int:
    view = builder.view(gltf, encode_image(image, texture_format), target=None)
    gltf.images.append(pygltflib.Image(bufferView=view, mimeType=f"image/{texture_format}"))
    source = len(gltf.images) - 1
    if texture_format == TextureFormat.webp:
        texture = pygltflib.Texture(sampler=0, extensions={"EXT_texture_webp": {"source": source}})
    else:
        texture = pygltflib.Texture(sampler=0, source=source)
    gltf.textures.append(texture)
    return len(gltf.textures) - 1


class _BufferBuilder:
    """Accumulates buffer views into one 4-byte-aligned binary chunk."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._length = 0

    def view(self, gltf: pygltflib.GLTF2, data: bytes, target: Optional[int]) -> int:
        pad = (-self._length) % 4
        if pad:
            self._parts.append(b"\x00" * pad)
            self._length += pad
        gltf.bufferViews.append(
            pygltflib.BufferView(buffer=0, byteOffset=self._length, byteLength=len(data), target=target)
        )
        self._parts.append(data)
        self._length += len(data)
        return len(gltf.bufferViews) - 1

    def accessor(
        self, gltf: pygltflib.GLTF2, array: np.ndarray, kind: str, target: int, bounds: bool = False
    ) -> int:
        array = np.ascontiguousarray(array)
        view = self.view(gltf, array.tobytes(), target)
        component = _UINT32 if array.dtype == np.uint32 else _FLOAT
        rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)
        gltf.accessors.append(
            pygltflib.Accessor(
                bufferView=view,
                componentType=component,
                count=int(array.shape[0]),
                type=kind,
                min=rows.min(axis=0).tolist() if bounds and rows.size else None,
                max=rows.max(axis=0).tolist() if bounds and rows.size else None,
            )
        )
        return len(gltf.accessors) - 1

    def blob(self) -> bytes:
        pad = (-self._length) % 4
        return b"".join(self._parts) + b"\x00" * pad


__all__ = ["ExportMesh", "encode_image", "glb_and_mesh", "place_export_mesh", "prepare_export_mesh", "to_glb",
           "write_glb"]
