"""Channel-to-spatial upsampling (x2 per axis) of sparse voxels, driven by a per-voxel subdivision mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tensor import SparseTensor

CHILDREN = 8


def child_offsets(device: torch.device | str | None = None) -> torch.Tensor:
    """(8, 3) int offsets of child k: `(k & 1, (k >> 1) & 1, (k >> 2) & 1)` along (x, y, z)."""
    k = torch.arange(CHILDREN, device=device)
    return torch.stack([k & 1, (k >> 1) & 1, (k >> 2) & 1], dim=1)


@dataclass(frozen=True)
class Subdivision:
    """Where each child voxel comes from; one plan serves every feature tensor on the parent coords."""

    coords: torch.Tensor  # (M, 4) int32 child coords (batch, 2x + dx, 2y + dy, 2z + dz), by parent row then k
    source: torch.Tensor  # (M,) int64 parent_row * 8 + k: the child's slot in the parent's (N * 8) sub-rows

    def gather(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, 8 * C') parent features -> (M, C'); child k takes channels [k * C', (k + 1) * C')."""
        n, c = feats.shape
        if c % CHILDREN:
            raise ValueError(f"channel-to-spatial needs channels divisible by 8, got {c}")
        return feats.reshape(n * CHILDREN, c // CHILDREN).index_select(0, self.source)


def subdivide(coords: torch.Tensor, mask: torch.Tensor) -> Subdivision:
    """Children of every parent voxel whose mask bit is set.

    Args:
        coords: (N, 4) int `(batch, x, y, z)` parent coords.
        mask: (N, 8) bool; bit k creates child `(b, 2x + (k & 1), 2y + ((k >> 1) & 1), 2z + ((k >> 2) & 1))`.

    Returns:
        The plan; children are ordered by parent row, then k, so batch items stay contiguous and ascending.
    """
    if mask.shape != (coords.shape[0], CHILDREN):
        raise ValueError(f"subdivision mask must be ({coords.shape[0]}, 8), got {tuple(mask.shape)}")
    parent, k = mask.nonzero(as_tuple=True)  # row-major: by parent, then k
    child = coords.index_select(0, parent).to(torch.int32)
    child[:, 1:] = child[:, 1:] * 2 + child_offsets(coords.device).to(torch.int32).index_select(0, k)
    return Subdivision(coords=child, source=parent * CHILDREN + k)


def channel_to_spatial(x: SparseTensor, mask: torch.Tensor) -> SparseTensor:
    """Upsample `x` (N, 8 * C') into (M, C') children at twice the resolution; a new coordinate set (fresh cache)."""
    plan = subdivide(x.coords, mask)
    return SparseTensor(plan.gather(x.feats), plan.coords)
