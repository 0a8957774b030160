"""Channel-to-spatial upsampling (x2 per axis) of sparse voxels, driven by a per-voxel subdivision mask, and its
mirror, spatial-to-channel downsampling (each 2x2x2 cell becomes one voxel holding its children's features)."""

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


@dataclass(frozen=True)
class Coarsening:
    """Where each voxel goes when 2x2x2 cells merge; one plan serves every feature tensor on the fine coords."""

    coords: torch.Tensor  # (M, 4) int32 parent coords (batch, x // 2, y // 2, z // 2), unique, lexicographic
    target: torch.Tensor  # (N,) int64 parent_row * 8 + k: the fine voxel's slot in the parents' (M * 8) sub-rows

    def scatter(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, C) fine features -> (M, 8 * C); child k fills channels [k * C, (k + 1) * C), absent children are 0."""
        n, c = feats.shape
        if n != self.target.shape[0]:
            raise ValueError(f"spatial-to-channel plan is for {self.target.shape[0]} voxels, got {n} feature rows")
        out = feats.new_zeros(self.coords.shape[0] * CHILDREN, c)
        out[self.target] = feats
        return out.reshape(self.coords.shape[0], CHILDREN * c)


def coarsen(coords: torch.Tensor) -> Coarsening:
    """Merge the voxels of every 2x2x2 cell into their parent (the inverse of `subdivide`).

    Args:
        coords: (N, 4) int `(batch, x, y, z)` fine coords, non-negative, no duplicate rows; any row order.

    Returns:
        The plan; parents are sorted lexicographically by (batch, x, y, z), so batch items stay contiguous and
        ascending. Voxel `(b, x, y, z)` is child `k = (x & 1) + 2 (y & 1) + 4 (z & 1)` of `(b, x >> 1, y >> 1, z >> 1)`.
    """
    c = coords.to(torch.int64)
    parent = torch.cat([c[:, :1], c[:, 1:] >> 1], dim=1)  # (N, 4)
    k = (c[:, 1] & 1) + 2 * (c[:, 2] & 1) + 4 * (c[:, 3] & 1)  # (N,) child index, as in `child_offsets`
    if len(c) == 0:
        return Coarsening(coords=coords.new_zeros(0, 4, dtype=torch.int32), target=k)
    span = parent[:, 1:].amax(dim=0) + 1  # (3,)
    keys = ((parent[:, 0] * span[0] + parent[:, 1]) * span[1] + parent[:, 2]) * span[2] + parent[:, 3]
    unique_keys, row = torch.unique(keys, sorted=True, return_inverse=True)
    z = unique_keys % span[2]
    rest = unique_keys // span[2]
    y = rest % span[1]
    rest = rest // span[1]
    parents = torch.stack([rest // span[0], rest % span[0], y, z], dim=1).to(torch.int32)
    return Coarsening(coords=parents, target=row * CHILDREN + k)


def spatial_to_channel(x: SparseTensor) -> SparseTensor:
    """Downsample `x` (N, C) into (M, 8 * C) parents at half the resolution; a new coordinate set (fresh cache)."""
    plan = coarsen(x.coords)
    return SparseTensor(plan.scatter(x.feats), plan.coords)
