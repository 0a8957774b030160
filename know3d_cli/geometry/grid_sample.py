"""Sparse voxel lookup and trilinear sampling of a sparse attribute volume (FlexGEMM `grid_sample_3d`, spec §3.6).

Voxel (i, j, k) spans [i, i+1) x [j, j+1) x [k, k+1) in voxel units, centre (i+0.5, j+0.5, k+0.5). Lookups use
sorted int64 keys `(x*R + y)*R + z` and `torch.searchsorted` instead of a GPU hash map.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

_MISSING = -1

# The 8 corners of the trilinear stencil, as (dx, dy, dz) in {0, 1}.
_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.int64)


class VoxelIndex:
    """Sorted-key index of sparse voxel coordinates in a grid of side `resolution`.

    Args:
        coords: (M, 3) int voxel coordinates, unique, each in [0, resolution).
        resolution: grid side R.
    """

    def __init__(self, coords: torch.Tensor, resolution: int):
        if coords.ndim != 2 or coords.shape[1] != 3:
            raise ValueError(f"coords must have shape (M, 3), got {tuple(coords.shape)}")
        self.resolution = int(resolution)
        keys = self.keys(coords)
        self.sorted_keys, self.order = torch.sort(keys)  # (M,), (M,) row of each sorted key

    def keys(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 3) int -> (...,) int64 keys; coordinates outside the grid map to -1."""
        c = coords.to(torch.int64)
        r = self.resolution
        inside = ((c >= 0) & (c < r)).all(dim=-1)
        key = (c[..., 0] * r + c[..., 1]) * r + c[..., 2]
        return torch.where(inside, key, torch.full_like(key, _MISSING))

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 3) int query coordinates -> (...,) int64 row in the original `coords`, or -1 when absent."""
        query = self.keys(coords)
        if self.sorted_keys.numel() == 0:
            return torch.full_like(query, _MISSING)
        pos = torch.searchsorted(self.sorted_keys, query).clamp_(max=self.sorted_keys.numel() - 1)
        found = (self.sorted_keys[pos] == query) & (query >= 0)
        return torch.where(found, self.order[pos], torch.full_like(pos, _MISSING))


def grid_sample_3d(
    coords: torch.Tensor,
    attrs: torch.Tensor,
    resolution: int,
    points: torch.Tensor,
    mode: str = "trilinear",
    chunk_size: int = 1 << 18,
    index: VoxelIndex | None = None,
) -> torch.Tensor:
    """Sample a sparse voxel attribute volume at arbitrary points.

    Trilinear: the 8 voxels around q (`floor(q - 0.5)` and `+1` per axis; identical to the spec's `int(q ± 0.5)` for
    q >= 0) weigh `prod(1 - |n + 0.5 - q|)`; absent voxels weigh 0 and the result is divided by the sum of present
    weights (clamped at 1e-12), so a point with no voxel around it returns 0. Nearest: voxel `floor(q)`, 0 if absent.

    Args:
        coords: (M, 3) int voxel coordinates (unique).
        attrs: (M, C) float attributes of those voxels.
        resolution: grid side R.
        points: (P, 3) float query points in voxel units, `(p - origin) / voxel_size`.
        mode: "trilinear" or "nearest".
        chunk_size: points processed at once (bounds memory to ~chunk_size * 8 * (C + 4) values).
        index: a prebuilt `VoxelIndex` of `coords` to reuse across calls.

    Returns:
        (P, C) sampled attributes, float32 (or attrs' dtype when it is float64).
    """
    if mode not in ("trilinear", "nearest"):
        raise ValueError(f"mode must be 'trilinear' or 'nearest', got {mode!r}")
    if attrs.ndim != 2 or attrs.shape[0] != coords.shape[0]:
        raise ValueError(f"attrs must have shape (M, C) with M={coords.shape[0]}, got {tuple(attrs.shape)}")
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (P, 3), got {tuple(points.shape)}")
    index = index if index is not None else VoxelIndex(coords, resolution)
    dtype = attrs.dtype if attrs.dtype == torch.float64 else torch.float32
    values = torch.cat([attrs.to(dtype), torch.zeros(1, attrs.shape[1], dtype=dtype, device=attrs.device)])  # row -1
    out = torch.empty(points.shape[0], attrs.shape[1], dtype=dtype, device=attrs.device)
    corners = _CORNERS.to(points.device)
    for start in range(0, points.shape[0], chunk_size):
        q = points[start:start + chunk_size].to(dtype)  # (p, 3)
        if mode == "nearest":
            rows = index.lookup(torch.floor(q).to(torch.int64))  # (p,)
            out[start:start + q.shape[0]] = values[rows]
            continue
        base = torch.floor(q - 0.5).to(torch.int64)  # (p, 3) lower neighbour per axis
        nbr = base[:, None, :] + corners  # (p, 8, 3)
        w = (1.0 - (nbr.to(dtype) + 0.5 - q[:, None, :]).abs()).clamp_(min=0.0).prod(dim=-1)  # (p, 8)
        rows = index.lookup(nbr)  # (p, 8)
        w = w * (rows >= 0)
        acc = (values[rows] * w[..., None]).sum(dim=1)  # (p, C)
        out[start:start + q.shape[0]] = acc / w.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return out


__all__ = ["VoxelIndex", "grid_sample_3d"]
