"""The generated asset: a mesh in TRELLIS.2's frame, optionally with PBR voxels (made by TRELLIS.2, written by
export)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class Asset3D:
    """A generated asset in TRELLIS.2's frame (Z up, object inside the cube [-0.5, 0.5]^3).

    The PBR attribute volume, when present, is a sparse voxel grid of side `resolution` with origin
    (-0.5, -0.5, -0.5) and voxel size 1 / resolution; voxel (i, j, k) spans [i, i+1) in voxel units.
    """

    vertices: torch.Tensor  # (V, 3) float32 positions
    faces: torch.Tensor  # (F, 3) int64 vertex indices, counter-clockwise seen from outside
    source_stage: str  # "ss" (stage-1 occupancy surface) | "shape" (O-Voxel flexible dual grid)
    resolution: int  # voxel grid side the geometry was extracted at
    voxel_coords: Optional[torch.Tensor] = None  # (M, 3) int32 voxel coordinates of the PBR volume (ss: occupied)
    voxel_attrs: Optional[torch.Tensor] = None  # (M, 6) float: base colour 0:3, metallic, roughness, alpha

    @property
    def textured(self) -> bool:
        return self.voxel_attrs is not None

    @property
    def voxel_size(self) -> float:
        return 1.0 / self.resolution
