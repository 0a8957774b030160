"""A sample's TRELLIS.2 latents: shape and texture SLat from its O-Voxel, the SS latent from their occupancy.

Order of the upstream toolkit: encode the O-Voxel with the shape and texture SC-VAE encoders (latent grid R / 16),
then take the 64^3 occupancy of the sparse structure and encode it with the SS VAE encoder. Upstream takes that
occupancy from the coordinates of the shape latent at 1024 (a 64^3 grid). Here it is the O-Voxel's active voxels
pooled to 64^3, `unique(coords // (R / 64))`: at R = 1024 that is exactly the shape latent's coordinate set (the
encoder's four stride-2 downsamplings map a voxel to `coords // 16`); at R = 512, whose latent grid is 32^3, it is
the same pooling of the 512 grid. The two agree: the 512 grid's edges lie on the 1024 grid's even lines, and the four
voxels around a crossed edge fall in the same 64^3 cells at both resolutions, so they can differ only through
features smaller than a 512 voxel (`scripts/bench_data_build.py --compare-occupancy`: identical cells, IoU 1.0, on a
100k-face sphere and on a thin ring).

Every latent is the posterior mean (upstream encodes with `sample_posterior=False`), stored unnormalised, fp32.
"""

from __future__ import annotations

import torch

from .models import Encoders, sparse
from .ovoxel import OVoxel
from .schema import SS_GRID



def ss_occupancy(coords: torch.Tensor, resolution: int) -> torch.Tensor:
    """(N, 3) voxel coords of an R^3 grid -> (M, 3) int32 occupied cells of the 64^3 grid, lexicographic."""
    if resolution % SS_GRID:
        raise ValueError(f"resolution {resolution} is not a multiple of {SS_GRID}")
    cells = torch.unique(coords.long() // (resolution // SS_GRID), dim=0)  # unique sorts rows lexicographically
    return cells.to(torch.int32)


def dense_occupancy(cells: torch.Tensor) -> torch.Tensor:
    """(M, 3) occupied cells -> (1, 1, 64, 64, 64) float32 grid, 1 where occupied (the SS encoder input)."""
    grid = torch.zeros(1, 1, SS_GRID, SS_GRID, SS_GRID)
    x, y, z = cells.long().unbind(dim=1)
    grid[0, 0, x, y, z] = 1.0
    return grid


@torch.no_grad()
def encode_latents(ovoxel: OVoxel, encoders: Encoders, ss_only: bool = False) -> dict[str, torch.Tensor]:
    """The LATENT_TENSORS of `schema.py` for one O-Voxel (computed on the encoders' device, returned on the CPU); only
    `occupancy` and `ss_latent` when `ss_only` (`data.latents=ss`). Both SC-VAE latents sit on the same coordinates:
    the encoders downsample the same voxels alike."""
    device = encoders.device
    cells = ss_occupancy(ovoxel.coords, ovoxel.resolution)
    ss = encoders.ss(dense_occupancy(cells).to(device))
    latents = {"occupancy": cells.contiguous(), "ss_latent": ss.mean[0].float().cpu().contiguous()}
    if ss_only:
        return latents
    coords = ovoxel.batched_coords().to(device)
    shape = encoders.shape(sparse(ovoxel.offsets.to(device), coords), sparse(ovoxel.intersected.to(device), coords))
    tex = encoders.tex(sparse(ovoxel.texture_features().to(device), coords))
    return {
        **latents,
        "shape_coords": shape.coords[:, 1:].to(torch.int32).cpu().contiguous(),
        "shape_feats": shape.mean.float().cpu().contiguous(),
        "tex_feats": tex.mean.float().cpu().contiguous(),
    }


__all__ = ["SS_GRID", "dense_occupancy", "encode_latents", "ss_occupancy"]
