"""A lighter copy of an exported model for preview renders, with its textures still mapped right.

A CPU renderer (Mesa llvmpipe) spends its time per triangle, so a 500k-face asset costs about 10 s for the eight
preview tiles. Previews render a copy decimated to about `export.preview_faces` instead. The exported mesh is split
along its UV seams (one vertex per chart corner), and collapsing an edge on a seam would tear the surface open or
drag one chart's texture into another, so seam (open-border) vertices are kept: every collapse happens inside one
chart, and each remaining vertex keeps its own UV, colour and normal. The seams therefore set a floor on how far a
mesh can be reduced (about 1.3 faces per seam vertex); the target is raised to that floor, because asking the
decimator for less makes it search for collapses it is not allowed to make (5-7 s on a 500k-face asset).
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

FACES_PER_SEAM_VERTEX = 1.3  # measured floor of a seam-preserving decimation of xatlas-unwrapped meshes


def simplify_scene(scene, max_faces: int):
    """A copy of a trimesh `Scene` whose meshes hold about `max_faces` triangles in all (each reduced in
    proportion), or `scene` itself when it already has no more. Visuals (UV + material, or vertex colours) and
    vertex normals are carried over."""
    import trimesh

    meshes = {name: g for name, g in scene.geometry.items() if isinstance(g, trimesh.Trimesh) and len(g.faces)}
    total = sum(len(m.faces) for m in meshes.values())
    if total <= max_faces:
        return scene
    out = scene.copy()
    for name, mesh in meshes.items():
        out.geometry[name] = simplify_mesh(mesh, max(4, round(max_faces * len(mesh.faces) / total)))
    return out


def simplify_mesh(mesh, target_faces: int):
    """`mesh` (trimesh `Trimesh`) decimated to about `target_faces` triangles without moving its open borders."""
    import fast_simplification
    import trimesh

    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    target = max(target_faces, int(FACES_PER_SEAM_VERTEX * _border_vertex_count(faces, len(vertices))))
    if target >= len(faces):
        return mesh
    positions, new_faces, collapses = fast_simplification.simplify(
        vertices, faces, target_count=target, preserve_border=True, return_collapses=True)
    kept = _surviving_vertices(faces, len(vertices), collapses)
    if len(kept) != len(positions):  # the decimator's vertex order changed: keep the full mesh rather than guess
        logger.warning("preview decimation returned %d vertices for %d survivors; rendering the full mesh",
                       len(positions), len(kept))
        return mesh
    visual = mesh.visual
    if visual.kind == "texture" and visual.uv is not None and len(visual.uv) == len(vertices):
        visual = trimesh.visual.TextureVisuals(uv=np.asarray(visual.uv)[kept], material=visual.material)
    elif visual.kind == "vertex":
        visual = trimesh.visual.ColorVisuals(vertex_colors=np.asarray(visual.vertex_colors)[kept])
    else:
        visual = None
    normals = np.asarray(mesh.vertex_normals)[kept]
    logger.debug("preview mesh: %d -> %d faces", len(faces), len(new_faces))
    return trimesh.Trimesh(positions, new_faces, vertex_normals=normals, visual=visual, process=False)


def _border_vertex_count(faces: np.ndarray, n_vertices: int) -> int:
    """Vertices on an edge that only one face uses (open borders: UV seams of a split mesh)."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    keys, counts = np.unique(edges[:, 0] * n_vertices + edges[:, 1], return_counts=True)
    border = keys[counts == 1]
    return int(np.unique(np.concatenate([border // n_vertices, border % n_vertices])).size)


def _surviving_vertices(faces: np.ndarray, n_vertices: int, collapses: np.ndarray) -> np.ndarray:
    """Original indices of the decimated mesh's vertices, in its order: replaying the collapses (`[kept, removed]`
    pairs, in order) maps every vertex to the one it ended in; the decimator keeps the used ones in index order."""
    root = np.arange(n_vertices)
    if len(collapses):
        root[collapses[:, 1]] = collapses[:, 0]
    while True:  # follow chains of collapses to their end
        next_root = root[root]
        if np.array_equal(next_root, root):
            break
        root = next_root
    corners = root[faces]
    alive = (corners[:, 0] != corners[:, 1]) & (corners[:, 1] != corners[:, 2]) & (corners[:, 2] != corners[:, 0])
    return np.unique(corners[alive])


__all__ = ["FACES_PER_SEAM_VERTEX", "simplify_mesh", "simplify_scene"]
