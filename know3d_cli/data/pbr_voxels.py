"""PBR attributes of the active voxels (the appearance half of an O-Voxel), sampled from the asset's materials.

As in TRELLIS.2's o-voxel toolkit, a voxel's value is the average over every (triangle, voxel) pair that the edge
scan links (the triangle crosses an edge of the voxel), each pair sampled once at the voxel centre projected onto
the triangle's plane. Where that projection falls outside the triangle, its barycentric coordinates are clamped to
the triangle (upstream extrapolates the UVs, which reads neighbouring atlas charts near UV seams).

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
from .grid_crossings import EdgeCrossings, crossing_voxels, voxel_keys
from .material import Material
from .texture_sampling import TexturePyramid, mip_level

ATTRIBUTE_LAYOUT = {"base_color": slice(0, 3), "metallic": slice(3, 4), "roughness": slice(4, 5), "alpha": slice(5, 6)}
NUM_ATTRIBUTES = 6


class PbrVoxelBuilder:
    """Accumulates attribute samples chunk by chunk.

    Args:
        asset: the loaded asset (materials, UVs, vertex colours).
        triangles: (T, 3, 3) float64 corners in voxel units, row-aligned with `asset.faces`.
        resolution: grid side R.
    """

    def __init__(self, asset: Asset, triangles: torch.Tensor, resolution: int):
        self.asset = asset
        self.triangles = triangles.numpy()
        self.resolution = resolution
        faces = asset.faces
        self.uv = asset.uv[faces].astype(np.float64) if asset.uv is not None else None  # (T, 3, 2)
        self.colors = asset.vertex_colors[faces] if asset.vertex_colors is not None else None  # (T, 3, 4)
        self.uv_per_voxel = _uv_per_voxel(self.triangles, self.uv) if self.uv is not None else None
        self.pyramids: dict[int, tuple[TexturePyramid | None, TexturePyramid | None]] = {}
        self._keys: list[torch.Tensor] = []
        self._sums: list[torch.Tensor] = []

    def add(self, crossings: EdgeCrossings) -> None:
        row, voxel, _ = crossing_voxels(crossings, self.resolution)
        keys = voxel_keys(voxel, self.resolution)
        tri = crossings.triangle[row]
        # one sample per (triangle, voxel) pair
        pair = torch.unique(tri * self.resolution**3 + keys)
        tri_np = (pair // self.resolution**3).numpy()
        key = pair % self.resolution**3
        voxel_np = torch.stack([key // self.resolution**2, (key // self.resolution) % self.resolution,
                                key % self.resolution], dim=1).numpy()
        bary = _clamped_barycentrics(self.triangles[tri_np], voxel_np + 0.5)
        attrs = self._sample(tri_np, bary)
        values = torch.from_numpy(np.concatenate([np.ones((attrs.shape[0], 1), np.float32), attrs], axis=1))
        unique, inverse = torch.unique(key, return_inverse=True)
        sums = torch.zeros((unique.numel(), values.shape[1]), dtype=torch.float32).index_add_(0, inverse, values)
        self._keys.append(unique)
        self._sums.append(sums)

    def build(self, coords: torch.Tensor) -> torch.Tensor:
        """(N, 3) int active voxel coordinates (lexicographic) -> (N, 6) float32 attributes in [0, 1]."""
        out = torch.zeros((coords.shape[0], NUM_ATTRIBUTES), dtype=torch.float32)
        if not self._keys:
            return out
        keys = torch.cat(self._keys)
        unique, inverse = torch.unique(keys, return_inverse=True)
        sums = torch.zeros((unique.numel(), NUM_ATTRIBUTES + 1), dtype=torch.float32)
        sums.index_add_(0, inverse, torch.cat(self._sums))
        self._keys.clear()
        self._sums.clear()
        wanted = voxel_keys(coords, self.resolution)
        pos = torch.searchsorted(unique, wanted).clamp(max=max(unique.numel() - 1, 0))
        found = unique[pos] == wanted
        out[found] = sums[pos[found], 1:] / sums[pos[found], :1]
        return out.clamp_(0, 1)

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


def _clamped_barycentrics(tri: np.ndarray, point: np.ndarray) -> np.ndarray:
    """(P, 3, 3) triangles and (P, 3) points -> (P, 3) barycentrics of the point's projection onto the triangle's
    plane, clamped to the triangle (negative weights set to 0, then renormalised)."""
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    vp = point - tri[:, 0]
    d00 = (e1 * e1).sum(1)
    d01 = (e1 * e2).sum(1)
    d11 = (e2 * e2).sum(1)
    d20 = (vp * e1).sum(1)
    d21 = (vp * e2).sum(1)
    denom = d00 * d11 - d01 * d01
    safe = np.where(denom > 0, denom, 1.0)
    v = (d11 * d20 - d01 * d21) / safe
    w = (d00 * d21 - d01 * d20) / safe
    bary = np.stack([1.0 - v - w, v, w], axis=1)
    bary = np.where((denom > 0)[:, None], bary, 1.0 / 3.0)
    bary = np.clip(bary, 0.0, None)
    return bary / bary.sum(axis=1, keepdims=True)


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


__all__ = ["ATTRIBUTE_LAYOUT", "NUM_ATTRIBUTES", "PbrVoxelBuilder"]
