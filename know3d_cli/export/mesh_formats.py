"""OBJ and PLY writers (via trimesh) and the format dispatcher.

Both formats use the glTF axis convention (Y up: (x, y, z) -> (x, z, -y)), the same clean-up and decimation to
`cfg.faces` as the GLB, and per-vertex normals. Colour: a writer returns one `bytes`, so an OBJ cannot carry its
.mtl and texture files; textured assets therefore get per-vertex colours instead of baked textures, sampled from
the PBR volume at the closest high-resolution surface point of each vertex (OBJ: the common `v x y z r g b`
extension, no alpha; PLY: uchar red/green/blue/alpha). Metallic and roughness are not representable and dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import trimesh

from ..config import ExportConfig, ExportFormat
from ..geometry import Asset3D
from .bake import SurfaceAttributes
from .glb import glb_and_mesh
from .mesh_ops import decimate_asset, to_gltf_frame, vertex_normals
from ..timing import timed

logger = logging.getLogger(__name__)


def to_trimesh(asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None) -> trimesh.Trimesh:
    """Decimated, Y-up `trimesh.Trimesh` with vertex normals and (textured assets) RGBA vertex colours."""
    hi_vertices, hi_faces, vertices, faces = decimate_asset(asset, cfg.faces, timings)
    colors = None
    if asset.textured:
        with timed(timings, "vertex_colors"):
            attrs = SurfaceAttributes.of(asset, hi_vertices, hi_faces).sample(vertices)  # (V, 6)
            colors = np.rint(attrs[:, [0, 1, 2, 5]] * 255.0).astype(np.uint8)
    normals = vertex_normals(vertices, faces)
    return trimesh.Trimesh(
        vertices=to_gltf_frame(vertices),
        faces=faces,
        vertex_normals=to_gltf_frame(normals),
        vertex_colors=colors,
        process=False,
    )


@dataclass(frozen=True)
class EncodedMesh:
    """A mesh file's content and what it holds."""

    data: bytes  # the file content
    extension: str  # "glb" | "obj" | "ply", without the dot
    vertices: int  # vertices written (a GLB splits them along UV seams)
    faces: int  # triangles written (after decimation)


def to_obj(asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None) -> bytes:
    """Wavefront OBJ bytes: positions (+ vertex colours for textured assets), normals, faces."""
    return _obj(to_trimesh(asset, cfg, timings), asset.textured, timings)


def to_ply(asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None) -> bytes:
    """Binary little-endian PLY bytes with vertex normals (+ RGBA vertex colours for textured assets)."""
    return _ply(to_trimesh(asset, cfg, timings), timings)


def _obj(mesh: trimesh.Trimesh, textured: bool, timings: Optional[dict[str, float]]) -> bytes:
    with timed(timings, "encode"):
        text = trimesh.exchange.obj.export_obj(
            mesh, include_normals=True, include_color=textured, include_texture=False, header="know3d"
        )
    return text.encode("utf-8")


def _ply(mesh: trimesh.Trimesh, timings: Optional[dict[str, float]]) -> bytes:
    with timed(timings, "encode"):
        return trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=True, include_attributes=False)


def encode_mesh(asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None) -> EncodedMesh:
    """Encode `asset` in `cfg.format`, with the counts of what was written.

    Raises:
        GenerationError: the mesh is empty after clean-up.
    """
    if cfg.format is ExportFormat.glb:
        data, mesh = glb_and_mesh(asset, cfg, timings)
        return EncodedMesh(data, cfg.format.value, len(mesh.positions), len(mesh.faces))
    trimesh_mesh = to_trimesh(asset, cfg, timings)
    if cfg.format is ExportFormat.obj:
        data = _obj(trimesh_mesh, asset.textured, timings)
    else:
        data = _ply(trimesh_mesh, timings)
    return EncodedMesh(data, cfg.format.value, len(trimesh_mesh.vertices), len(trimesh_mesh.faces))


__all__ = ["EncodedMesh", "encode_mesh", "to_obj", "to_ply", "to_trimesh"]
