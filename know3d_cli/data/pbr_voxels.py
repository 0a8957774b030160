"""PBR attributes of the active voxels (the appearance half of an O-Voxel), sampled from the asset's materials.

As in TRELLIS.2's o-voxel toolkit, a voxel's value is the average over every (triangle, voxel) pair that the edge
scan links (the triangle crosses an edge of the voxel), each pair sampled once at the point of the triangle closest
to the voxel centre. (Upstream projects the centre onto the triangle's plane and extrapolates the UVs when that
falls outside the triangle, which reads neighbouring atlas charts near UV seams.)

Per sample, with the material's factors (glTF metallic-roughness):
- base colour = base_color_factor.rgb x texture.rgb (when the material has one) x vertex colour.rgb (when the
  asset has them);
- metallic = metallic_factor x texture.B, roughness = roughness_factor x texture.G (metallic-roughness texture);
- alpha = 1 for OPAQUE, else base_color_factor.a x texture.a x vertex colour.a, thresholded at alpha_cutoff for MASK.
Textures are read through mip levels that match the voxel size (see `texture_sampling`).
"""

from __future__ import annotations

import numpy as np
import torch

from .asset import Asset
from .grid_crossings import ActiveVoxels, EdgeCrossings, key_voxels
from .sorted_keys import add_by_group, group_chunks, group_starts
from .material import Material
from .texture_sampling import TexturePyramid, mip_level

ATTRIBUTE_LAYOUT = {"base_color": slice(0, 3), "metallic": slice(3, 4), "roughness": slice(4, 5), "alpha": slice(5, 6)}
NUM_ATTRIBUTES = 6


def voxel_attributes(
    asset: Asset,
    triangles: torch.Tensor,
    crossings: EdgeCrossings,
    active: ActiveVoxels,
    resolution: int,
    chunk_size: int,
) -> torch.Tensor:
    """Average the material samples of every (triangle, voxel) pair linked by a crossing.

    Args:
        asset: the loaded asset (materials, UVs, vertex colours).
        triangles: (T, 3, 3) float64 corners in voxel units, row-aligned with `asset.faces`.
        crossings: the edge crossings of `triangles`; active: the voxels around them.
        chunk_size: pairs sampled at once.

    Returns:
        (N, 6) float32 attributes in [0, 1], `ATTRIBUTE_LAYOUT`.
    """
    n = active.keys.shape[0]
    tri_bits = max(1, int(triangles.shape[0] - 1).bit_length())
    pairs = (active.row.astype(np.int64) << tri_bits) | crossings.triangle.numpy()[active.crossing].astype(np.int64)
    pairs.sort()  # rows stay non-decreasing; one sample per (voxel, triangle) pair
    pairs = pairs[group_starts(pairs)]
    rows, tris = pairs >> tri_bits, pairs & ((1 << tri_bits) - 1)
    del pairs
    sampler = _MaterialSampler(asset, triangles)
    sums = np.zeros((n, NUM_ATTRIBUTES), dtype=np.float64)
    counts = np.zeros(n, dtype=np.float64)
    for part in group_chunks(rows, chunk_size):
        centre = key_voxels(active.keys[rows[part]], resolution) + 0.5
        add_by_group(sums, rows[part], sampler.sample(tris[part], centre))
        add_by_group(counts, rows[part], np.ones(centre.shape[0]))
    return torch.from_numpy((sums / np.maximum(counts, 1)[:, None]).astype(np.float32)).clamp_(0, 1)


class _MaterialSampler:
    """Per-triangle data for sampling the asset's materials at points near its triangles."""

    def __init__(self, asset: Asset, triangles: torch.Tensor):
        self.asset = asset
        tri = triangles.numpy()
        faces = asset.faces
        self.origin = tri[:, 0]
        self.ab, self.ac = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        self.uv = asset.uv[faces].astype(np.float64) if asset.uv is not None else None  # (T, 3, 2)
        self.colors = asset.vertex_colors[faces] if asset.vertex_colors is not None else None  # (T, 3, 4)
        self.uv_per_voxel = _uv_per_voxel(tri, self.uv) if self.uv is not None else None
        self.pyramids: dict[int, tuple[TexturePyramid | None, TexturePyramid | None]] = {}

    def sample(self, tri: np.ndarray, point: np.ndarray) -> np.ndarray:
        """(P,) triangles and (P, 3) points in voxel units -> (P, 6) attributes at each triangle's closest point."""
        return self._sample(tri, _closest_barycentrics(self, tri, point))

    def _sample(self, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """(P,) triangles and (P, 3) barycentrics -> (P, 6) attributes."""
        out = np.empty((tri.shape[0], NUM_ATTRIBUTES), dtype=np.float32)
        material_of = self.asset.face_materials[tri]
        uv = np.einsum("pk,pkc->pc", bary, self.uv[tri]) if self.uv is not None else None
        color = np.einsum("pk,pkc->pc", bary, self.colors[tri]).astype(np.float32) if self.colors is not None else None
        for m in np.unique(material_of):
            rows = np.flatnonzero(material_of == m)
            out[rows] = self._material_values(int(m), rows, tri[rows], uv, color)
        return out

    def _material_values(self, m: int, rows, tri, uv, color) -> np.ndarray:
        material: Material = self.asset.materials[m]
        base_tex, mr_tex = self._pyramids(m)
        factor = np.asarray(material.base_color_factor, dtype=np.float32)
        rgba = np.broadcast_to(factor, (rows.size, 4)).copy()
        metallic = np.full(rows.size, material.metallic_factor, dtype=np.float32)
        roughness = np.full(rows.size, material.roughness_factor, dtype=np.float32)
        if uv is not None and (base_tex is not None or mr_tex is not None):
            uv_rows = uv[rows]
            if base_tex is not None:
                rgba *= base_tex.sample(uv_rows, mip_level(self.uv_per_voxel[tri], base_tex.side))
            if mr_tex is not None:
                mr = mr_tex.sample(uv_rows, mip_level(self.uv_per_voxel[tri], mr_tex.side))
                roughness *= mr[:, 1]
                metallic *= mr[:, 2]
        if color is not None:
            rgba *= color[rows]
        if material.alpha_mode == "OPAQUE":
            alpha = np.ones(rows.size, dtype=np.float32)
        elif material.alpha_mode == "MASK":
            alpha = (rgba[:, 3] >= material.alpha_cutoff).astype(np.float32)
        else:
            alpha = rgba[:, 3]
        return np.concatenate([rgba[:, :3], metallic[:, None], roughness[:, None], alpha[:, None]], axis=1)

    def _pyramids(self, m: int) -> tuple[TexturePyramid | None, TexturePyramid | None]:
        if m not in self.pyramids:
            material = self.asset.materials[m]
            self.pyramids[m] = (
                TexturePyramid(material.base_color_texture) if material.base_color_texture is not None else None,
                TexturePyramid(material.metallic_roughness_texture)
                if material.metallic_roughness_texture is not None else None,
            )
        return self.pyramids[m]


def _closest_barycentrics(sampler: _MaterialSampler, tri: np.ndarray, point: np.ndarray) -> np.ndarray:
    """(P, 3) barycentrics of the point of each triangle closest to each point (Ericson's region tests)."""
    a = sampler.origin[tri]
    ab, ac = sampler.ab[tri], sampler.ac[tri]
    ap, bp, cp = point - a, point - a - ab, point - a - ac
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2

    def ratio(num, den):
        return np.divide(num, den, out=np.zeros_like(num), where=den != 0)

    total = va + vb + vc
    v, w = ratio(vb, total), ratio(vc, total)
    bary = np.stack([1 - v - w, v, w], axis=1)  # inside the triangle (or degenerate)
    # regions in reverse order of precedence: later ones win
    t = ratio(d4 - d3, (d4 - d3) + (d5 - d6))
    bary = np.where(((va <= 0) & (d4 >= d3) & (d5 >= d6))[:, None], np.stack([0 * t, 1 - t, t], 1), bary)  # edge BC
    t = ratio(d2, d2 - d6)
    bary = np.where(((vb <= 0) & (d2 >= 0) & (d6 <= 0))[:, None], np.stack([1 - t, 0 * t, t], 1), bary)  # edge AC
    bary = np.where(((d6 >= 0) & (d5 <= d6))[:, None], np.array([0.0, 0.0, 1.0]), bary)  # vertex C
    t = ratio(d1, d1 - d3)
    bary = np.where(((vc <= 0) & (d1 >= 0) & (d3 <= 0))[:, None], np.stack([1 - t, t, 0 * t], 1), bary)  # edge AB
    bary = np.where(((d3 >= 0) & (d4 <= d3))[:, None], np.array([0.0, 1.0, 0.0]), bary)  # vertex B
    return np.where(((d1 <= 0) & (d2 <= 0))[:, None], np.array([1.0, 0.0, 0.0]), bary)  # vertex A


def _uv_per_voxel(triangles: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(T,) UV distance spanned by one voxel on each triangle: 1 / sqrt(|dP/du| |dP/dv|), P in voxel units.

    Triangles with degenerate UVs get 0 (read at the finest level, as upstream)."""
    e1 = triangles[:, 1] - triangles[:, 0]
    e2 = triangles[:, 2] - triangles[:, 0]
    duv1 = uv[:, 1] - uv[:, 0]
    duv2 = uv[:, 2] - uv[:, 0]
    det = duv1[:, 0] * duv2[:, 1] - duv1[:, 1] * duv2[:, 0]
    dp_du = np.linalg.norm(duv2[:, 1:2] * e1 - duv1[:, 1:2] * e2, axis=1)
    dp_dv = np.linalg.norm(duv1[:, 0:1] * e2 - duv2[:, 0:1] * e1, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        density = dp_du * dp_dv / (det * det)  # |dP/du| |dP/dv|
        out = 1.0 / np.sqrt(density)
    return np.where((np.abs(det) > 1e-12) & np.isfinite(out), out, 0.0)


__all__ = ["ATTRIBUTE_LAYOUT", "NUM_ATTRIBUTES", "voxel_attributes"]
