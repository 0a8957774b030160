"""Resolution bookkeeping between TRELLIS.2 stages: occupancy -> tokens, and the LR -> HR cascade."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .pipeline_spec import NormalizationSpec

LATENT_DOWNSAMPLE = 16  # the SC-VAE latent grid is 1/16 of the voxel resolution
HR_RESOLUTION_STEP = 128  # the token cap lowers 1536 in steps of this


@dataclass(frozen=True)
class LatentNormalization:
    """Per-channel statistics a flow's structured latent is normalised with: the flow works on `(z - mean) / std`."""

    mean: torch.Tensor  # (C,)
    std: torch.Tensor  # (C,)

    @classmethod
    def from_spec(cls, spec: NormalizationSpec) -> LatentNormalization:
        """From `pipeline.json`'s `{"mean", "std"}` entry."""
        return cls(torch.tensor(spec.mean), torch.tensor(spec.std))

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats - self.mean.to(feats)) / self.std.to(feats)

    def denormalize(self, feats: torch.Tensor) -> torch.Tensor:
        return feats * self.std.to(feats) + self.mean.to(feats)


def occupancy_coords(logits: torch.Tensor, grid: int) -> torch.Tensor:
    """Active voxels of the decoded sparse structure.

    Args:
        logits: (B, 1, 64, 64, 64) sparse-structure decoder output; occupied where > 0.
        grid: 64, or 32 to max-pool (a coarse voxel is occupied if any of its 8 children is).
    Returns:
        coords: (N, 4) int32 `(batch, x, y, z)` in lexicographic order.
    """
    occ = (logits > 0).float()
    if grid != occ.shape[-1]:
        factor = occ.shape[-1] // grid
        occ = F.max_pool3d(occ, factor, factor)
    return torch.argwhere(occ[:, 0] > 0.5).int()


def quantize_coords(coords: torch.Tensor, from_res: int, to_latent_grid: int) -> torch.Tensor:
    """Map (N, 4) coords on a `from_res` grid to the HR latent grid, deduplicated and sorted."""
    xyz = ((coords[:, 1:].double() + 0.5) / from_res * to_latent_grid).trunc().to(coords.dtype)
    return torch.unique(torch.cat([coords[:, :1], xyz], dim=1), dim=0)


def cap_resolution(
    coords: torch.Tensor, from_res: int, hr_res: int, max_tokens: int
) -> tuple[torch.Tensor, int, int]:
    """Quantise to the HR latent grid, lowering `hr_res` in steps of 128 while the tokens reach the cap.

    1024 is never lowered (only resolutions above it are), as in the reference.

    Returns:
        (HR coords (N, 4), the resolution used, the token count at the requested `hr_res`).
    """
    hr_coords = quantize_coords(coords, from_res, hr_res // LATENT_DOWNSAMPLE)
    requested_tokens = int(hr_coords.shape[0])
    while hr_coords.shape[0] >= max_tokens and hr_res > 1024:
        hr_res -= HR_RESOLUTION_STEP
        hr_coords = quantize_coords(coords, from_res, hr_res // LATENT_DOWNSAMPLE)
    return hr_coords, hr_res, requested_tokens
