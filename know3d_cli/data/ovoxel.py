"""Asset -> O-Voxel: the flexible dual grid and PBR voxel attributes TRELLIS.2's SC-VAE encoders consume.

Frame and grid: the normalised asset (Z-up, inside [-0.5, 0.5]^3, see `asset.py`) in a grid of side R (256, 512
or 1024) over the box [-0.5, 0.5]^3; voxel (i, j, k) spans [i, i+1] x [j, j+1] x [k, k+1] in voxel units
`(p + 0.5) * R`, i.e. `[-0.5 + i / R, -0.5 + (i + 1) / R]` along x, and so on. Both halves share one voxel set:
the four voxels around every grid edge the surface crosses, sorted lexicographically by (x, y, z).

Per voxel (N rows, row-aligned):

| field | shape | meaning |
|---|---|---|
| `coords` | (N, 3) int32 | (x, y, z) in [0, R) |
| `offsets` | (N, 3) float32 | dual vertex minus `coords`, voxel units, in [0, 1] |
| `intersected` | (N, 3) bool | surface crosses the x / y / z edge through the voxel's maximum corner |
| `attrs` | (N, 6) float32 | base colour RGB 0:3, metallic 3, roughness 4, alpha 5, each in [0, 1] |

What the encoders see (upstream `FlexiDualGridVaeEncoder` / `SparseUnetVaeEncoder` on the toolkit's data), with
`SparseTensor` coords `(N, 4)` int32 = (batch, x, y, z):

- shape encoder, 6 channels: `offsets - 0.5` (3), then `intersected - 0.5` (3) -> `shape_features()`;
- texture encoder, 6 channels: `attrs * 2 - 1` in the order above -> `texture_features()`.

Upstream stores both as bytes (`uint8(x * 255)`, truncated) between the toolkit and training; `quantized()`
applies the same rounding when the training data must match that exactly. The dual grid decodes back to a mesh with
`know3d_cli.trellis2.mesh.flexible_dual_grid_to_mesh(coords, offsets, intersected, split_weights, R)`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from ..config import OVoxelConfig
from ..errors import AssetError
from .asset import Asset
from .dual_grid import boundary_segments, build_dual_grid
from .grid_crossings import active_voxels, edge_crossings
from .pbr_voxels import voxel_attributes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OVoxel:
    resolution: int  # grid side R
    coords: torch.Tensor  # (N, 3) int32 (x, y, z), lexicographic
    offsets: torch.Tensor  # (N, 3) float32 dual vertex within its voxel, voxel units, [0, 1]
    intersected: torch.Tensor  # (N, 3) bool crossed x / y / z edge through the voxel's max corner
    attrs: torch.Tensor  # (N, 6) float32 base colour (3), metallic, roughness, alpha in [0, 1]

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])

    def batched_coords(self, batch: int = 0) -> torch.Tensor:
        """(N, 4) int32 (batch, x, y, z), the SparseTensor coordinate layout."""
        column = torch.full((self.num_voxels, 1), batch, dtype=torch.int32)
        return torch.cat([column, self.coords], dim=1)

    def shape_features(self) -> torch.Tensor:
        """(N, 6) float32 shape-encoder input: offsets - 0.5, then intersected - 0.5."""
        return torch.cat([self.offsets - 0.5, self.intersected.to(torch.float32) - 0.5], dim=1)

    def texture_features(self) -> torch.Tensor:
        """(N, 6) float32 texture-encoder input: attrs mapped from [0, 1] to [-1, 1]."""
        return self.attrs * 2 - 1

    def quantized(self) -> OVoxel:
        """The same O-Voxel with offsets and attrs rounded as upstream stores them: uint8(x * 255) / 255."""
        def q(x: torch.Tensor) -> torch.Tensor:
            return (x.clamp(0, 1) * 255).to(torch.uint8).to(torch.float32) / 255

        return replace(self, offsets=q(self.offsets), attrs=q(self.attrs))


def asset_to_ovoxel(asset: Asset, cfg: OVoxelConfig) -> OVoxel:
    """Convert a loaded asset at `cfg.resolution`.

    Raises:
        AssetError: the surface crosses no grid edge (reason "no_surface": e.g. every triangle is degenerate).
    """
    r = cfg.resolution
    triangles = torch.from_numpy((asset.vertices.astype("float64")[asset.faces] + 0.5) * r)  # (T, 3, 3) voxel units
    crossings = edge_crossings(triangles, r, cfg.chunk_size)
    active = active_voxels(crossings, r)
    if active.keys.shape[0] == 0:
        raise AssetError(f"{asset.source}: the surface crosses no edge of the {r}^3 grid (degenerate triangles?)",
                         "no_surface")
    segments = (boundary_segments(asset.vertices.astype("float64"), asset.faces) + 0.5) * r
    grid = build_dual_grid(triangles, crossings, active, segments, cfg)
    attrs = voxel_attributes(asset, triangles, crossings, active, r, cfg.chunk_size)
    logger.debug("%s: O-Voxel %d^3 with %d voxels", asset.source, r, grid.coords.shape[0])
    return OVoxel(r, grid.coords, grid.offsets, grid.intersected, attrs)


__all__ = ["OVoxel", "asset_to_ovoxel"]
