"""Sparse voxel tensor: features on integer coordinates, grouped per batch item."""

from __future__ import annotations

import torch

from .coordinate_cache import CoordinateCache


class SparseTensor:
    """Features on active voxels.

    Attributes:
        feats: (N, C) features, one row per active voxel.
        coords: (N, 4) int32 `(batch, x, y, z)`; rows of one batch item are contiguous and batch
            items appear in ascending order.
        cache: what is derived from `coords` (batch layout, neighbour map, RoPE phases), shared by every tensor
            made with `replace`; a cache made for other coordinates is refused.
    """

    def __init__(self, feats: torch.Tensor, coords: torch.Tensor, cache: CoordinateCache | None = None):
        if feats.ndim != 2 or coords.ndim != 2 or coords.shape[1] != 4:
            raise ValueError(
                f"expected feats (N, C) and coords (N, 4), got {tuple(feats.shape)} and {tuple(coords.shape)}"
            )
        if feats.shape[0] != coords.shape[0]:
            raise ValueError(f"feats has {feats.shape[0]} rows but coords has {coords.shape[0]}")
        if cache is not None and not cache.serves(coords):
            raise ValueError("the coordinate cache was made for another coordinate tensor")
        self.feats = feats
        self.coords = coords
        self.cache = CoordinateCache(coords) if cache is None else cache

    # ----------------------------------------------------------------------------------- layout
    @property
    def batch_size(self) -> int:
        """Number of batch items."""
        if self.cache.batch_size is None:
            self.cache.batch_size = int(self.coords[:, 0].max().item()) + 1 if len(self) else 0
        return self.cache.batch_size

    @property
    def batch_index(self) -> torch.Tensor:
        """(N,) int64 batch item of each row."""
        if self.cache.batch_index is None:
            self.cache.batch_index = self.coords[:, 0].long()
        return self.cache.batch_index

    @property
    def lengths(self) -> list[int]:
        """Number of voxels (rows) of each batch item."""
        if self.cache.lengths is None:
            self.cache.lengths = torch.bincount(self.batch_index, minlength=self.batch_size).tolist()
        return self.cache.lengths

    @property
    def row_slices(self) -> list[slice]:
        """Row slice of each batch item."""
        slices, start = [], 0
        for n in self.lengths:
            slices.append(slice(start, start + n))
            start += n
        return slices

    @property
    def num_channels(self) -> int:
        return self.feats.shape[1]

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @property
    def dtype(self) -> torch.dtype:
        return self.feats.dtype

    def __len__(self) -> int:
        """Number of voxels (rows), all batch items together."""
        return self.feats.shape[0]

    # ------------------------------------------------------------------------------ operations
    def replace(self, feats: torch.Tensor) -> SparseTensor:
        """Same coordinates (and cache), new (N, C') features."""
        return SparseTensor(feats, self.coords, self.cache)

    def broadcast(self, per_sample: torch.Tensor) -> torch.Tensor:
        """Expand a (B, C) per-sample tensor to (N, C) rows."""
        return per_sample[self.batch_index]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> SparseTensor:
        """Features moved and/or cast; coordinates moved with them (a new coordinate set, so a new cache)."""
        feats = self.feats.to(device=device, dtype=dtype)
        if device is None or torch.device(device) == self.coords.device:
            return SparseTensor(feats, self.coords, self.cache)
        return SparseTensor(feats, self.coords.to(device))

    def __repr__(self) -> str:
        return f"SparseTensor(voxels={len(self)}, channels={self.num_channels}, batch={self.batch_size})"
