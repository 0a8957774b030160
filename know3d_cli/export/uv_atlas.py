"""UV unwrapping: our own normal-cone chart clustering + planar projection, packed by xatlas.

xatlas' own chart computation takes minutes on 500 k faces on a 2-core CPU (216 s measured), so, like CuMesh
(GPU clustering + xatlas packing), charts are made here and xatlas only packs them (`use_input_mesh_uvs`), which
takes about a second. A chart is a connected set of faces (sharing edges) whose smoothed normal falls in the same
one of the six axis cones (half-angle up to 54.7 deg); it is projected orthographically onto the plane of that axis,
in the winding-preserving order. Only faces folded against their neighbours flip; charts of non-height-field shapes
(e.g. a spiral ramp) may overlap themselves. Both are rare on decoder surfaces and only make nearby surface points
share texels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import GenerationError
from .mesh_ops import face_normals

logger = logging.getLogger(__name__)

FACING_MIN = -0.5  # a face folded further than this from its chart axis gets its own cone
_AXES = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
# Planar coordinates per cone, ordered so that (u, v, axis) is right-handed: CCW faces stay CCW.
_UV_DIMS = np.array([[1, 2], [2, 1], [2, 0], [0, 2], [0, 1], [1, 0]])


@dataclass(frozen=True)
class UVAtlas:
    """A mesh cut along chart seams, with per-vertex UVs.

    UVs follow the OpenGL convention (v up): texel row r of an S-pixel image covers v in [1 - (r+1)/S, 1 - r/S].
    """

    vmap: np.ndarray  # (V', ) int64 input vertex of each atlas vertex
    faces: np.ndarray  # (F, 3) int64 atlas vertex indices, same face order as the input
    uvs: np.ndarray  # (V', 2) float32 in [0, 1]
    num_charts: int


def chart_faces(vertices: np.ndarray, faces: np.ndarray, smooth_iterations: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Cluster faces into charts.

    Args:
        vertices: (V, 3) float. faces: (F, 3) int64.
        smooth_iterations: rounds of face -> vertex -> face normal averaging before picking a cone; smoothing
            keeps bumpy voxel surfaces from fragmenting into thousands of tiny charts.

    Returns:
        chart: (F,) int64 chart id per face; cone: (F,) int64 axis cone (0..5: +x, -x, +y, -y, +z, -z) per face.
    """
    nv, nf = vertices.shape[0], faces.shape[0]
    fn = face_normals(vertices, faces, normalize=False)  # (F, 3) area-weighted
    smooth = fn
    for _ in range(smooth_iterations):
        vn = np.zeros((nv, 3))
        for corner in range(3):
            for c in range(3):
                vn[:, c] += np.bincount(faces[:, corner], weights=smooth[:, c], minlength=nv)
        smooth = vn[faces].sum(axis=1)
    unit = fn / np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-30)
    smooth = smooth / np.maximum(np.linalg.norm(smooth, axis=1, keepdims=True), 1e-30)
    cone = (smooth @ _AXES.T).argmax(axis=1)
    # Faces folded against their smoothed normal (decoder noise) would flip in the projection. Mild folds stay in
    # the chart (their texels overlap neighbours that sample nearly the same 3D point); strong ones use their own
    # normal's cone, which keeps them unflipped but makes tiny charts.
    facing = np.einsum("fc,fc->f", unit, _AXES[cone])
    own = (unit @ _AXES.T).argmax(axis=1)
    cone = np.where(facing > FACING_MIN, cone, own)

    # faces sharing an edge and a cone are connected
    edges = np.sort(np.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=1).reshape(-1, 2), axis=1)
    key = edges[:, 0] * nv + edges[:, 1]
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    same = key_sorted[1:] == key_sorted[:-1]
    fa, fb = order[:-1][same] // 3, order[1:][same] // 3
    link = cone[fa] == cone[fb]
    graph = coo_matrix((np.ones(int(link.sum()), dtype=np.int8), (fa[link], fb[link])), shape=(nf, nf))
    _, chart = connected_components(graph, directed=False)
    return chart.astype(np.int64), cone.astype(np.int64)


def unwrap_uv(vertices: np.ndarray, faces: np.ndarray, texture_size: int, padding: int = 2) -> UVAtlas:
    """Cut the mesh into charts and pack them into one square atlas of about `texture_size` texels.

    Args:
        vertices: (V, 3) float. faces: (F, 3) int64 (clean: no degenerate faces).
        texture_size: atlas side in texels (packing density and padding are chosen for it).
        padding: empty texels kept between charts.

    Returns:
        UVAtlas. xatlas sizes the atlas only approximately (e.g. 2418 x 1906 for 2048); the UVs are normalised to
        [0, 1] per axis, so the atlas is stretched to the square texture and the padding scales with it.
    """
    import xatlas

    chart, cone = chart_faces(vertices, faces)
    n_charts = int(chart.max()) + 1 if chart.size else 0
    corner_vertex = faces.reshape(-1)  # (3F,)
    corner_chart = np.repeat(chart, 3)
    corner_cone = np.repeat(cone, 3)
    pos = vertices[corner_vertex]  # (3F, 3)
    dims = _UV_DIMS[corner_cone]  # (3F, 2)
    corner_uv = np.take_along_axis(pos, dims, axis=1)
    # one atlas vertex per (vertex, chart)
    split_key = corner_vertex * n_charts + corner_chart
    unique_key, split_faces = np.unique(split_key, return_inverse=True)
    split_vmap = unique_key // n_charts
    split_uv = np.zeros((unique_key.size, 2))
    split_uv[split_faces] = corner_uv
    split_uv -= split_uv.min(axis=0)
    split_uv /= max(float(split_uv.max()), 1e-12)
    split_faces = split_faces.reshape(-1, 3)

    atlas = xatlas.Atlas()
    atlas.add_mesh(
        np.ascontiguousarray(vertices[split_vmap], dtype=np.float32),
        np.ascontiguousarray(split_faces, dtype=np.uint32),
        None,
        np.ascontiguousarray(split_uv, dtype=np.float32),
    )
    chart_options = xatlas.ChartOptions()
    chart_options.use_input_mesh_uvs = True
    pack_options = xatlas.PackOptions()
    pack_options.resolution = int(texture_size)
    pack_options.padding = int(padding)
    pack_options.bilinear = True
    pack_options.rotate_charts = True
    atlas.generate(chart_options, pack_options)
    if atlas.atlas_count != 1:
        # the estimated density overflowed one atlas: repack at that density without a size limit (always one)
        logger.debug("xatlas made %d atlases; repacking into one", atlas.atlas_count)
        pack_options.texels_per_unit = float(atlas.texels_per_unit)
        pack_options.resolution = 0
        atlas.generate(chart_options, pack_options)
    if atlas.atlas_count != 1:
        raise GenerationError(f"UV packing produced {atlas.atlas_count} atlases instead of 1 (xatlas)")
    out_vmap, out_faces, out_uvs = atlas[0]
    out_faces = out_faces.astype(np.int64).reshape(-1, 3)
    vmap = split_vmap[out_vmap.astype(np.int64)]
    logger.debug(
        "uv atlas: %d charts, %d vertices, %dx%d, utilisation %.2f",
        n_charts, vmap.size, atlas.width, atlas.height, atlas.utilization,
    )
    return UVAtlas(vmap=vmap, faces=out_faces, uvs=out_uvs.astype(np.float32), num_charts=n_charts)


__all__ = ["UVAtlas", "chart_faces", "unwrap_uv"]
