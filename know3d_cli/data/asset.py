"""3D asset file (GLB/glTF/OBJ/PLY) -> one flat, normalised, textured triangle mesh in TRELLIS.2's frame.

TRELLIS.2's data toolkit imports assets with Blender, which turns glTF's and OBJ's Y-up into its Z-up frame
(`(x, y, z) -> (x, -z, y)`) and reads PLY as Z-up already; it then centres the bounding box of every mesh vertex
at the origin and scales its longest side to 0.99999, so the asset lies in [-0.5, 0.5]^3. `load_asset` does the
same with trimesh: scene-graph transforms are applied, every mesh part is kept with its material, UVs and vertex
colours, and the bounding box is taken over the vertices that faces use (a stray unused vertex cannot shrink the
asset). An asset that cannot be used raises `AssetError` with one line saying why, so that it fails alone in a build.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import AssetConfig
from ..errors import AssetError
from .material import DEFAULT_MATERIAL, Material, material_from_trimesh

logger = logging.getLogger(__name__)

SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
Y_UP_SUFFIXES = (".glb", ".gltf", ".obj")  # converted to Z-up like Blender's importers do
NORMALISED_SIDE = 0.99999  # longest bounding-box side after normalisation (TRELLIS.2 toolkit)
# AssetError.reason values, with what they mean.
ASSET_FAILURES = {
    "missing": "the file does not exist or is not a file",
    "unsupported_format": "the suffix is not one of .glb .gltf .obj .ply",
    "too_large": "the file is larger than data.asset.max_file_mb",
    "unreadable": "trimesh cannot parse the file",
    "empty": "the file holds no geometry",
    "no_faces": "no mesh in the file has a triangle",
    "bad_faces": "a face refers to a vertex that does not exist",
    "too_many_faces": "more triangles than data.asset.max_faces",
    "non_finite": "a vertex coordinate is NaN or infinite",
    "bad_extent": "the bounding box is degenerate or absurdly large (data.asset.min_extent / max_extent)",
    "no_surface": "the surface crosses no edge of the O-Voxel grid (every triangle degenerate)",
    "empty_render": "a front or back render shows nothing to crop (e.g. every material cut out by its alpha)",
}


@dataclass(frozen=True, eq=False)
class Asset:
    source: Path  # the file as given
    vertices: np.ndarray  # (V, 3) float32, normalised, Z-up (TRELLIS.2 frame), inside [-0.5, 0.5]^3
    faces: np.ndarray  # (F, 3) int64 indices into vertices, counter-clockwise as in the file
    face_materials: np.ndarray  # (F,) int32 index into `materials`
    materials: tuple[Material, ...]
    uv: np.ndarray | None  # (V, 2) float32, OpenGL convention (v = 1 at the image top); 0 where a part has none
    vertex_colors: np.ndarray | None  # (V, 4) float32 RGBA in [0, 1]; 1 where a part has none
    center: np.ndarray  # (3,) float64 bounding-box centre in the Z-up frame of the file's units
    scale: float  # vertices = (file vertex in Z-up - center) * scale

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])


def load_asset(path: Path, cfg: AssetConfig) -> Asset:
    """Load, flatten and normalise one asset file.

    Raises:
        AssetError: the file is missing, unsupported, unreadable or unusable (`reason` in `ASSET_FAILURES`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise AssetError(f"{path}: asset file not found", "missing")
    if suffix not in SUFFIXES:
        raise AssetError(f"{path}: unsupported asset format {suffix or '(none)'!r}; use one of "
                         f"{' '.join(SUFFIXES)}", "unsupported_format")
    size_mb = path.stat().st_size / 2**20
    if size_mb > cfg.max_file_mb:
        raise AssetError(f"{path}: file is {size_mb:.0f} MiB, more than data.asset.max_file_mb={cfg.max_file_mb:g}",
                         "too_large")
    import trimesh

    try:
        scene = trimesh.load(str(path), force="scene", process=False)
    except Exception as exc:  # trimesh raises whatever its parsers raise (ValueError, KeyError, struct.error, ...)
        raise AssetError(f"{path}: cannot read the asset ({type(exc).__name__}: {_first_line(exc)})",
                         "unreadable") from exc
    return asset_from_scene(scene, cfg, source=path, y_up=suffix in Y_UP_SUFFIXES)


def asset_from_scene(scene, cfg: AssetConfig, *, source: Path, y_up: bool) -> Asset:
    """Flatten and normalise a trimesh `Scene` (or `Trimesh`) already in memory.

    Args:
        scene: what `trimesh.load` returned.
        source: the file it came from, for messages and the record.
        y_up: the scene is Y-up (glTF, OBJ) and is turned to Z-up.

    Raises:
        AssetError: as `load_asset`, from "empty" on.
    """
    import trimesh

    if isinstance(scene, trimesh.Trimesh):
        scene = trimesh.Scene(scene)
    if not scene.geometry:
        raise AssetError(f"{source}: the file holds no geometry", "empty")
    parts = [p for p in _read_parts(source, scene, cfg.max_texture_side) if p.faces.shape[0] > 0]
    if not parts:
        raise AssetError(f"{source}: no mesh in the file has a face", "no_faces")
    num_faces = sum(p.faces.shape[0] for p in parts)
    if num_faces > cfg.max_faces:
        raise AssetError(f"{source}: {num_faces} triangles, more than data.asset.max_faces={cfg.max_faces}",
                         "too_many_faces")
    return _assemble(source, parts, y_up, cfg)


@dataclass(frozen=True, eq=False)
class _Part:
    vertices: np.ndarray  # (V, 3) float64, scene transform applied, file frame
    faces: np.ndarray  # (F, 3) int64
    material: Material
    uv: np.ndarray | None  # (V, 2)
    colors: np.ndarray | None  # (V, 4) float32


def _read_parts(path: Path, scene, max_texture_side: int) -> list[_Part]:
    """Every mesh instance of the scene, transformed to world space, with its material."""
    import trimesh

    materials: dict[int, Material] = {}
    parts = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry.get(name)
        if not isinstance(geometry, trimesh.Trimesh):
            continue  # point clouds and paths have no surface
        parts.append(_part(path, geometry, np.asarray(transform, dtype=np.float64), materials, max_texture_side))
    return parts


def _part(path: Path, mesh, transform: np.ndarray, materials: dict[int, Material], max_texture_side: int) -> _Part:
    vertices = np.asarray(mesh.vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= vertices.shape[0]):
        raise AssetError(f"{path}: a face refers to vertex {int(faces.max())} of {vertices.shape[0]}", "bad_faces")
    vertices = vertices @ transform[:3, :3].T + transform[:3, 3]
    if np.linalg.det(transform[:3, :3]) < 0:  # a mirroring instance turns the winding over
        faces = faces[:, ::-1].copy()
    visual = mesh.visual
    uv, colors, material = None, None, DEFAULT_MATERIAL
    if visual.kind == "texture":
        key = id(visual.material)
        if key not in materials:
            materials[key] = material_from_trimesh(visual.material, max_texture_side)
        material = materials[key]
        if visual.uv is not None and len(visual.uv) == len(vertices):
            uv = np.nan_to_num(np.asarray(visual.uv, dtype=np.float32)[:, :2])
    elif visual.kind in ("vertex", "face"):
        material = _VERTEX_COLOR_MATERIAL
        if visual.kind == "vertex":
            colors = np.asarray(visual.vertex_colors, dtype=np.float32) / 255.0
        else:  # one colour per face: give every face its own three vertices
            colors = np.repeat(np.asarray(visual.face_colors, dtype=np.float32) / 255.0, 3, axis=0)
            vertices = vertices[faces].reshape(-1, 3)
            faces = np.arange(vertices.shape[0], dtype=np.int64).reshape(-1, 3)
    return _Part(vertices, faces, material, uv, colors)


# Parts coloured per vertex show their colours as they are (toolkit defaults for the rest).
_VERTEX_COLOR_MATERIAL = Material(
    base_color_factor=(1.0, 1.0, 1.0, 1.0), metallic_factor=DEFAULT_MATERIAL.metallic_factor,
    roughness_factor=DEFAULT_MATERIAL.roughness_factor, alpha_mode="OPAQUE", alpha_cutoff=0.5, name="vertex_colors",
)


def _assemble(path: Path, parts: list[_Part], y_up: bool, cfg: AssetConfig) -> Asset:
    vertices = np.concatenate([p.vertices for p in parts])
    if y_up:
        vertices = np.stack([vertices[:, 0], -vertices[:, 2], vertices[:, 1]], axis=1)
    offsets = np.cumsum([0] + [p.vertices.shape[0] for p in parts])
    faces = np.concatenate([p.faces + offsets[i] for i, p in enumerate(parts)])
    used = np.unique(faces)
    if not np.isfinite(vertices[used]).all():
        raise AssetError(f"{path}: a vertex coordinate is NaN or infinite", "non_finite")
    lo, hi = vertices[used].min(axis=0), vertices[used].max(axis=0)
    extent = float((hi - lo).max())
    if not cfg.min_extent <= extent <= cfg.max_extent:
        raise AssetError(f"{path}: bounding box's longest side is {extent:.3g}, outside [data.asset.min_extent="
                         f"{cfg.min_extent:g}, data.asset.max_extent={cfg.max_extent:g}]", "bad_extent")
    center = (lo + hi) / 2
    scale = NORMALISED_SIDE / extent
    normalised = ((vertices - center) * scale).astype(np.float32)

    materials: list[Material] = []
    face_materials = []
    for part in parts:
        if not any(m is part.material for m in materials):
            materials.append(part.material)
        index = next(i for i, m in enumerate(materials) if m is part.material)
        face_materials.append(np.full(part.faces.shape[0], index, dtype=np.int32))
    uv = None
    if any(p.uv is not None for p in parts):
        uv = np.concatenate([p.uv if p.uv is not None else np.zeros((p.vertices.shape[0], 2), np.float32)
                             for p in parts])
    colors = None
    if any(p.colors is not None for p in parts):
        colors = np.concatenate([p.colors if p.colors is not None else np.ones((p.vertices.shape[0], 4), np.float32)
                                 for p in parts])
    logger.debug("%s: %d parts, %d vertices, %d faces, %d materials, extent %.4g", path, len(parts),
                 vertices.shape[0], faces.shape[0], len(materials), extent)
    return Asset(
        source=path, vertices=normalised, faces=faces, face_materials=np.concatenate(face_materials),
        materials=tuple(materials), uv=uv, vertex_colors=colors, center=center, scale=scale,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no details"


__all__ = ["ASSET_FAILURES", "Asset", "NORMALISED_SIDE", "SUFFIXES", "asset_from_scene", "load_asset"]
