"""trimesh scene -> pyrender meshes: the PBR colour pass and the world-normal pass.

Materials are converted here rather than by pyrender's `Mesh.from_trimesh`, which marks every material BLEND (so
an opaque asset with alpha in its base-colour texture, as TRELLIS.2 exports, renders see-through): the glTF
alphaMode is kept (OPAQUE when unset), with base colour, metallic-roughness, emissive and normal maps and factors.
OBJ materials become their trimesh PBR equivalent with metallic 0; parts without a material get a neutral grey.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEUTRAL_GREY = (0.7, 0.7, 0.7, 1.0)  # base colour of parts that have neither a material nor vertex colours


@dataclass(frozen=True, eq=False)
class WorldPart:
    vertices: np.ndarray  # (V, 3) float32, scene transform applied
    faces: np.ndarray  # (F, 3) int64
    vertex_normals: np.ndarray  # (V, 3) float32
    uv: np.ndarray | None  # (V, 2) float32
    colors: np.ndarray | None  # (V, 4) float32 RGBA vertex colours in [0, 1]
    material: object | None  # trimesh PBRMaterial / SimpleMaterial, or None


def world_parts(model) -> list[WorldPart]:
    """Every triangle mesh of a trimesh `Scene` (or a single `Trimesh`) moved to its place in the scene."""
    import trimesh

    if isinstance(model, trimesh.Trimesh):
        model = trimesh.Scene(model)
    parts = []
    for node in model.graph.nodes_geometry:
        transform, name = model.graph[node]
        mesh = model.geometry.get(name)
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            continue
        transform = np.asarray(transform, dtype=np.float64)
        vertices = np.asarray(mesh.vertices, dtype=np.float64) @ transform[:3, :3].T + transform[:3, 3]
        faces = np.asarray(mesh.faces, dtype=np.int64)
        normal_matrix = np.linalg.inv(transform[:3, :3]).T
        normals = np.asarray(mesh.vertex_normals, dtype=np.float64) @ normal_matrix.T
        if np.linalg.det(transform[:3, :3]) < 0:
            faces = faces[:, ::-1]
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        uv, colors, material = None, None, None
        visual = mesh.visual
        if visual.kind == "texture":
            material = visual.material
            if visual.uv is not None and len(visual.uv) == len(vertices):
                uv = np.asarray(visual.uv, dtype=np.float32)[:, :2]
        elif visual.kind == "vertex":
            colors = np.asarray(visual.vertex_colors, dtype=np.float32) / 255.0
        elif visual.kind == "face":  # own vertices per face so the colours stay flat
            colors = np.repeat(np.asarray(visual.face_colors, dtype=np.float32) / 255.0, 3, axis=0)
            vertices, normals = vertices[faces].reshape(-1, 3), normals[faces].reshape(-1, 3)
            faces = np.arange(vertices.shape[0]).reshape(-1, 3)
        parts.append(WorldPart(vertices.astype(np.float32), faces, normals.astype(np.float32), uv, colors, material))
    return parts


def bounds(parts: list[WorldPart]) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) corners of the box around every vertex that a face uses."""
    used = [p.vertices[np.unique(p.faces)] for p in parts]
    points = np.concatenate(used) if used else np.zeros((1, 3), np.float32)
    return points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)


def color_mesh(pyrender, part: WorldPart):
    """The part as a pyrender Mesh with its PBR material (smooth vertex normals)."""
    primitive = pyrender.Primitive(
        positions=part.vertices, normals=part.vertex_normals, texcoord_0=part.uv, color_0=part.colors,
        indices=part.faces, material=_material(pyrender, part.material, part.colors is not None), mode=4,  # triangles
    )
    return pyrender.Mesh(primitives=[primitive])


def normal_mesh(pyrender, part: WorldPart):
    """The part with its face normals as vertex colours `(n + 1) / 2` (one vertex per face corner, so they stay flat),
    to be rendered with the FLAT flag."""
    triangles = part.vertices[part.faces].astype(np.float64)  # (F, 3, 3)
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-20)
    colors = np.ones((part.faces.shape[0] * 3, 4), dtype=np.float32)
    colors[:, :3] = np.repeat((normals + 1.0) / 2.0, 3, axis=0)
    material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(1.0, 1.0, 1.0, 1.0), alphaMode="OPAQUE",
                                                  doubleSided=True)
    primitive = pyrender.Primitive(positions=triangles.reshape(-1, 3).astype(np.float32), color_0=colors,
                                   material=material, mode=4)
    return pyrender.Mesh(primitives=[primitive])


def _material(pyrender, material, vertex_colors: bool):
    from trimesh.visual.material import PBRMaterial, SimpleMaterial

    if isinstance(material, SimpleMaterial):
        pbr, metallic = material.to_pbr(), 0.0
    elif isinstance(material, PBRMaterial):
        pbr = material
        metallic = 1.0 if pbr.metallicFactor is None else float(pbr.metallicFactor)
    else:
        base = (1.0, 1.0, 1.0, 1.0) if vertex_colors else NEUTRAL_GREY  # vertex colours show as they are
        return pyrender.MetallicRoughnessMaterial(baseColorFactor=base, metallicFactor=0.0, roughnessFactor=0.6,
                                                  alphaMode="OPAQUE")
    factor = np.ones(4) if pbr.baseColorFactor is None else np.asarray(pbr.baseColorFactor)
    base = factor / 255.0 if np.issubdtype(factor.dtype, np.integer) else factor.astype(np.float64)  # trimesh: uint8
    alpha_mode = str(pbr.alphaMode or "OPAQUE").upper()
    return pyrender.MetallicRoughnessMaterial(
        baseColorFactor=tuple(base.tolist()),
        baseColorTexture=pbr.baseColorTexture,
        metallicFactor=metallic,
        roughnessFactor=1.0 if pbr.roughnessFactor is None else float(pbr.roughnessFactor),
        metallicRoughnessTexture=pbr.metallicRoughnessTexture,
        normalTexture=pbr.normalTexture,
        emissiveTexture=pbr.emissiveTexture,
        emissiveFactor=pbr.emissiveFactor,
        alphaMode=alpha_mode if alpha_mode in ("OPAQUE", "MASK", "BLEND") else "OPAQUE",
        alphaCutoff=0.5 if pbr.alphaCutoff is None else float(pbr.alphaCutoff),
        doubleSided=bool(pbr.doubleSided),
    )


__all__ = ["NEUTRAL_GREY", "WorldPart", "bounds", "color_mesh", "normal_mesh", "world_parts"]
