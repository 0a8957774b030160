"""OBJ and PLY writers (via trimesh) and the format dispatcher.

Both formats use the glTF axis convention (Y up: (x, y, z) -> (x, z, -y)), the same clean-up and decimation to
`cfg.faces` as the GLB, and per-vertex normals. Colour: a writer returns one `bytes`, so an OBJ cannot carry its
.mtl and texture files; textured assets therefore get per-vertex colours instead of baked textures, sampled from
the PBR volume at the closest high-resolution surface point of each vertex (OBJ: the common `v x y z r g b`
extension, no alpha; PLY: uchar red/green/blue/alpha). Metallic and roughness are not representable and dropped.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import trimesh

from ..config import ExportConfig, ExportFormat
from ..geometry import Asset3D
from .bake import SurfaceAttributes
from .glb import to_glb
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


def to_obj(asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None) -> bytes:
    """Wavefront OBJ bytes: positions (+ vertex colours for textured assets), normals, faces."""
    mesh = to_trimesh(asset, cfg, timings)
    with timed(timings, "encode"):
        text = trimesh.exchange.obj.export_obj(
            mesh, include_normals=True, include_color=asset.textured, include_texture=False, header="know3d"
        )
    return text.encode("utf-8")


def to_ply(asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None) -> bytes:
    """Binary little-endian PLY bytes with vertex normals (+ RGBA vertex colours for textured assets)."""
    mesh = to_trimesh(asset, cfg, timings)
    with timed(timings, "encode"):
        return trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=True, include_attributes=False)


def encode_mesh(
    asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None
) -> tuple[bytes, str]:
    """Encode `asset` in `cfg.format`.

    Returns:
        (file content, extension without the dot: "glb" | "obj" | "ply").

    Raises:
        GenerationError: the mesh is empty after clean-up.
    """
    writers = {ExportFormat.glb: to_glb, ExportFormat.obj: to_obj, ExportFormat.ply: to_ply}
    return writers[cfg.format](asset, cfg, timings), str(cfg.format)


__all__ = ["encode_mesh", "to_obj", "to_ply", "to_trimesh"]
