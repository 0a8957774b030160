"""Sparse voxel tensor: features on integer coordinates, grouped per batch item."""

from __future__ import annotations

from typing import Any

import torch


class SparseTensor:
    """Features on active voxels.

    Attributes:
        feats: (N, C) features, one row per active voxel.
        coords: (N, 4) int32 `(batch, x, y, z)`; rows of one batch item are contiguous and batch
            items appear in ascending order.
        cache: per-coordinate-set cache (neighbour maps, RoPE phases, ...). Tensors made with
            `replace` share it, so a map built once serves every layer on the same coordinates.
    """

    def __init__(self, feats: torch.Tensor, coords: torch.Tensor, cache: dict[Any, Any] | None = None):
        if feats.ndim != 2 or coords.ndim != 2 or coords.shape[1] != 4:
            raise ValueError(
                f"expected feats (N, C) and coords (N, 4), got {tuple(feats.shape)} and {tuple(coords.shape)}"
            )
        if feats.shape[0] != coords.shape[0]:
            raise ValueError(f"feats has {feats.shape[0]} rows but coords has {coords.shape[0]}")
        self.feats = feats
        self.coords = coords
        self.cache = {} if cache is None else cache

    # ----------------------------------------------------------------------------------- layout
    @property
    def batch_size(self) -> int:
        if "batch_size" not in self.cache:
            self.cache["batch_size"] = int(self.coords[:, 0].max().item()) + 1 if len(self) else 0
        return self.cache["batch_size"]

    @property
    def batch_index(self) -> torch.Tensor:
        """(N,) int64 batch item of each row."""
        if "batch_index" not in self.cache:
            self.cache["batch_index"] = self.coords[:, 0].long()
        return self.cache["batch_index"]

    @property
    def counts(self) -> list[int]:
        """Number of voxels of each batch item."""
        if "counts" not in self.cache:
            counts = torch.bincount(self.batch_index, minlength=self.batch_size)
            self.cache["counts"] = counts.tolist()
        return self.cache["counts"]

    @property
    def layout(self) -> list[slice]:
        """Row slice of each batch item."""
        if "layout" not in self.cache:
            starts, layout = 0, []
            for n in self.counts:
                layout.append(slice(starts, starts + n))
                starts += n
            self.cache["layout"] = layout
        return self.cache["layout"]

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @property
    def dtype(self) -> torch.dtype:
        return self.feats.dtype

    @property
    def shape(self) -> tuple[int, int]:
        """(batch_size, channels)."""
        return (self.batch_size, self.feats.shape[1])

    def __len__(self) -> int:
        return self.feats.shape[0]

    # ------------------------------------------------------------------------------ operations
    def replace(self, feats: torch.Tensor) -> SparseTensor:
        """Same coordinates (and cache), new (N, C') features."""
        return SparseTensor(feats, self.coords, self.cache)

    def broadcast(self, per_sample: torch.Tensor) -> torch.Tensor:
        """Expand a (B, C) per-sample tensor to (N, C) rows."""
        return per_sample[self.batch_index]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> SparseTensor:
        feats = self.feats.to(device=device, dtype=dtype)
        if device is None or torch.device(device) == self.coords.device:
            return SparseTensor(feats, self.coords, self.cache)
        return SparseTensor(feats, self.coords.to(device))

    def __repr__(self) -> str:
        return f"SparseTensor(voxels={len(self)}, channels={self.feats.shape[1]}, batch={self.batch_size})"
