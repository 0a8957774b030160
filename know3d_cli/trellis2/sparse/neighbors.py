"""Submanifold 3x3x3 neighbour maps built from sorted int64 voxel keys (no hash table, no Python loop over voxels)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .tensor import SparseTensor

# Kernel slot k = i*9 + j*3 + l holds the neighbour at offset (i-1, j-1, l-1) along (x, y, z); slot 13 is the voxel
# itself and slot 26-k is the opposite offset of slot k.
KERNEL_VOLUME = 27
CENTER = 13


def kernel_offsets(device: torch.device | str | None = None) -> torch.Tensor:
    """(27, 3) int64 `(dx, dy, dz)` of every kernel slot, in slot order."""
    r = torch.arange(-1, 2, device=device)
    return torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(KERNEL_VOLUME, 3)


def build_neighbor_map(coords: torch.Tensor) -> torch.Tensor:
    """Row index of each voxel's 27 neighbours (same batch item), -1 where the neighbour is not active.

    Args:
        coords: (N, 4) int `(batch, x, y, z)`, non-negative, no duplicate rows; any row order.

    Returns:
        (N, 27) int64; column k is the neighbour at offset `kernel_offsets()[k]`.
    """
    n = coords.shape[0]
    device = coords.device
    neighbors = torch.full((n, KERNEL_VOLUME), -1, dtype=torch.int64, device=device)
    if n == 0:
        return neighbors
    c = coords.to(torch.int64)
    # A one-voxel margin on every side keeps key + offset inside the same batch item's box, so a neighbour
    # query never needs a bounds check and can never alias a voxel of another row, slab or batch item.
    span = c[:, 1:].amax(dim=0) + 3  # (3,) padded box side per axis
    sy, sz = int(span[1]), int(span[2])
    keys = ((c[:, 0] * int(span[0]) + c[:, 1] + 1) * sy + c[:, 2] + 1) * sz + c[:, 3] + 1  # (N,)
    sorted_keys, order = torch.sort(keys)
    rows = torch.arange(n, device=device)
    neighbors[:, CENTER] = rows
    # Shifting sorted keys by a constant keeps them sorted, so each searchsorted walks the table in order.
    # Only the 13 "positive" slots are searched; slot 26-k is the same relation read backwards.
    for k in range(CENTER):
        dx, dy, dz = k // 9 - 1, (k // 3) % 3 - 1, k % 3 - 1
        query = sorted_keys + ((dx * sy + dy) * sz + dz)
        pos = torch.searchsorted(sorted_keys, query).clamp_(max=n - 1)
        hit = sorted_keys[pos] == query
        src = order[hit]
        dst = order[pos[hit]]
        neighbors[src, k] = dst
        neighbors[dst, KERNEL_VOLUME - 1 - k] = src
    return neighbors


def neighbor_map(x: SparseTensor) -> torch.Tensor:
    """(N, 27) int64 neighbour map of `x`, built once per coordinate set and kept in `x.cache.neighbors`."""
    if x.cache.neighbors is None:
        x.cache.neighbors = build_neighbor_map(x.coords)
    return x.cache.neighbors
