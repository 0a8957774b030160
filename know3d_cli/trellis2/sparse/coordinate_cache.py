"""What is derived from one coordinate set, computed on first use and shared by every tensor on those coordinates.

spconv keeps its neighbour maps ("indice data") on the sparse tensor under a layer-chosen `indice_key`; here the key
is the coordinate set itself: a `CoordinateCache` belongs to exactly one `coords` tensor (`SparseTensor` refuses a
cache made for other coordinates), so tensors made with `SparseTensor.replace` share it, and a new coordinate set
(subdivision, another device) starts a new one. Every entry is a typed field filled by the module that owns the
computation (`neighbors.neighbor_map`, the structured-latent flow's RoPE), never a free-form key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class RopeKey:
    """Which RoPE table: head dim and (scale, theta)."""

    head_dim: int
    rope_freq: tuple[float, float]


@dataclass
class CoordinateCache:
    """Derived data of one `(N, 4)` coordinate tensor; each field is None until first computed."""

    coords: torch.Tensor  # (N, 4) int32 (batch, x, y, z): the identity of this cache
    batch_size: int | None = None  # number of batch items (max batch index + 1)
    batch_index: torch.Tensor | None = None  # (N,) int64 batch item of each row
    lengths: list[int] | None = None  # rows per batch item
    neighbors: torch.Tensor | None = None  # (N, 27) int64 submanifold 3x3x3 neighbour rows, -1 where missing
    rope_phases: dict[RopeKey, torch.Tensor] = field(default_factory=dict)  # (N, D/2) complex64 per table

    def serves(self, coords: torch.Tensor) -> bool:
        """True when this cache was made for exactly this coordinate tensor."""
        return self.coords is coords


__all__ = ["CoordinateCache", "RopeKey"]
