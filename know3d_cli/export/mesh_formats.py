"""The PLY writer (via trimesh) and the format dispatcher: an asset -> the files of `export.format`.

Every format uses the glTF axis convention (Y up: (x, y, z) -> (x, z, -y)), the same clean-up and decimation to
`cfg.faces`, per-vertex normals and the same placement (`export.origin`, `export.height`), so a GLB, an OBJ and a
PLY of one asset overlap exactly. GLB and OBJ carry baked PBR textures (`glb.py`, `obj.py`). PLY has no standard
way to reference textures, so textured assets get per-vertex colours instead, sampled from the PBR volume at the
closest high-resolution surface point of each vertex (uchar red/green/blue/alpha); metallic and roughness are
dropped. PLY has no axis convention either: Blender's importer needs Up Axis = Y to stand it up like the GLB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import trimesh

from ..config import ExportConfig, ExportFormat
from ..geometry import Asset3D
from .bake import SurfaceAttributes
from .glb import place_export_mesh, prepare_export_mesh, write_glb
from .mesh_ops import decimate_asset, to_gltf_frame, vertex_normals
from .obj import write_obj
from .placement import Placement, bounds, placement_for
from ..timing import timed

logger = logging.getLogger(__name__)

MODEL_STEM = "model"


@dataclass(frozen=True)
class EncodedMesh:
    """What `encode_mesh` produced: the files, what they hold and where the asset was placed."""

    files: dict[str, bytes] = field(repr=False)  # file name -> content: `model_file` first, then its sidecars
    model_file: str  # "model.glb" | "model.obj" | "model.ply"
    placement: Placement  # scale and translation applied after the axis change
    bounds: list[list[float]]  # [[min x, y, z], [max x, y, z]] of the exported vertices, metres
    vertices: int  # vertices written (GLB/OBJ split them along UV seams)
    faces: int  # triangles written (after decimation)
    textures: dict[str, list[int]] = field(default_factory=dict)  # baked texture -> [width, height]; {} untextured


    @property
    def data(self) -> bytes:
        """The model file's content."""
        return self.files[self.model_file]

    @property
    def extension(self) -> str:
        """"glb" | "obj" | "ply", without the dot."""
        return self.model_file.rsplit(".", 1)[-1]

    def summary(self) -> dict[str, Any]:
        """Where the model went and its texture sizes, for metadata's `export` record (its counts go to
        `geometry`)."""
        return {"model_file": self.model_file, "placement": self.placement.as_dict(), "bounds": self.bounds,
                "textures": self.textures}


def to_trimesh(asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None) -> trimesh.Trimesh:
    """Decimated, Y-up, placed `trimesh.Trimesh` with vertex normals and (textured assets) RGBA vertex colours."""
    return _placed_trimesh(asset, cfg, timings)[0]


def _placed_trimesh(asset: Asset3D, cfg: ExportConfig,
                    timings: Optional[dict[str, float]]) -> tuple[trimesh.Trimesh, Placement]:
    hi_vertices, hi_faces, vertices, faces = decimate_asset(asset, cfg.faces, timings)
    colors = None
    if asset.textured:
        with timed(timings, "vertex_colors"):
            attrs = SurfaceAttributes.of(asset, hi_vertices, hi_faces).sample(vertices)  # (V, 6)
            colors = np.rint(attrs[:, [0, 1, 2, 5]] * 255.0).astype(np.uint8)
    positions = to_gltf_frame(vertices)
    placement = placement_for(positions, cfg.origin, cfg.height)
    mesh = trimesh.Trimesh(vertices=placement.apply(positions), faces=faces,
                           vertex_normals=to_gltf_frame(vertex_normals(vertices, faces)), vertex_colors=colors,
                           process=False)
    return mesh, placement


def to_ply(asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None) -> bytes:
    """Binary little-endian PLY bytes with vertex normals (+ RGBA vertex colours for textured assets)."""
    return _ply_bytes(to_trimesh(asset, cfg, timings), timings)


def encode_mesh(asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None) -> EncodedMesh:
    """Encode `asset` in `cfg.format`, with the counts of what was written (never touches disk).

    Raises:
        GenerationError: the mesh is empty after clean-up, or `export.height` is asked of a flat mesh.
    """
    model_file = f"{MODEL_STEM}.{cfg.format}"
    if cfg.format is ExportFormat.ply:
        mesh, placement = _placed_trimesh(asset, cfg, timings)
        positions, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        files, textures = {model_file: _ply_bytes(mesh, timings)}, {}  # PLY: vertex colours
    else:
        export_mesh, placement = place_export_mesh(prepare_export_mesh(asset, cfg, timings), cfg)
        positions, faces = export_mesh.positions, export_mesh.faces
        textures = {name: [int(image.shape[1]), int(image.shape[0])] for name, image in
                    (("base_color", export_mesh.base_color), ("metallic_roughness", export_mesh.metallic_roughness))
                    if image is not None}
        with timed(timings, "encode"):
            if cfg.format is ExportFormat.glb:
                files = {model_file: write_glb(export_mesh, cfg)}
            else:
                files = write_obj(export_mesh, cfg, MODEL_STEM)
    return EncodedMesh(files, model_file, placement, bounds(positions), int(positions.shape[0]),
                       int(faces.shape[0]), textures)


def _ply_bytes(mesh: trimesh.Trimesh, timings: Optional[dict[str, float]]) -> bytes:
    with timed(timings, "encode"):
        return trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=True, include_attributes=False)


__all__ = ["EncodedMesh", "MODEL_STEM", "encode_mesh", "to_ply", "to_trimesh"]
