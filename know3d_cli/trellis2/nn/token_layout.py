"""How the rows of a token tensor map to batch items, and attention restricted to one item.

The flow blocks run on dense tokens `(B, L, C)` (sparse-structure flow) and on packed sparse tokens `(N, C)`
(structured-latent flows, the rows of a `SparseTensor`). A layout says how a per-sample `(B, C)` vector broadcasts
over the rows and which attention kernel keeps each sample to itself; everything else in a block is shape-agnostic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch

from ..sparse.tensor import SparseTensor
from .attention import AttentionBackend, cumulative_lengths, dense_attention, varlen_attention


class DenseLayout:
    """B sequences of L tokens stored as `(B, L, C)`."""

    def __init__(self, batch_size: int, length: int):
        self.batch_size = batch_size
        self.length = length

    def broadcast(self, per_sample: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (B, 1, C), broadcastable against the tokens."""
        return per_sample[:, None, :]

    def self_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: AttentionBackend
    ) -> torch.Tensor:
        """q, k, v: (B, L, H, D) -> (B, L, H, D)."""
        return dense_attention(q, k, v, backend)

    def cross_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: AttentionBackend
    ) -> torch.Tensor:
        """q: (B, L, H, D); k, v: (B, M, H, D) -> (B, L, H, D)."""
        return dense_attention(q, k, v, backend)


class PackedLayout:
    """B sequences of ragged lengths packed row after row into `(N, C)` (the rows of a `SparseTensor`)."""

    def __init__(self, lengths: Sequence[int], batch_index: torch.Tensor):
        self.lengths = [int(n) for n in lengths]
        self.batch_index = batch_index  # (N,) int64
        self.batch_size = len(self.lengths)
        self._cu_seqlens: torch.Tensor | None = None

    @classmethod
    def from_sparse(cls, x: SparseTensor) -> PackedLayout:
        return cls(x.lengths, x.batch_index)

    def broadcast(self, per_sample: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (N, C) rows, or (1, C) when B == 1 (broadcasts without a gather)."""
        if self.batch_size == 1:
            return per_sample
        return per_sample[self.batch_index]

    def _cu(self, device: torch.device) -> torch.Tensor:
        if self._cu_seqlens is None or self._cu_seqlens.device != device:
            self._cu_seqlens = cumulative_lengths(self.lengths, device)
        return self._cu_seqlens

    def self_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: AttentionBackend
    ) -> torch.Tensor:
        """q, k, v: (N, H, D) -> (N, H, D); each sample attends over its own rows."""
        cu = self._cu(q.device)
        return varlen_attention(q, k, v, self.lengths, self.lengths, backend, cu, cu)

    def cross_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: AttentionBackend
    ) -> torch.Tensor:
        """q: (N, H, D); k, v: (B, M, H, D) dense context -> (N, H, D)."""
        batch, length = k.shape[:2]
        kv_lengths = [length] * batch
        cu_kv = torch.arange(batch + 1, dtype=torch.int32, device=q.device) * length
        return varlen_attention(
            q, k.flatten(0, 1), v.flatten(0, 1), self.lengths, kv_lengths, backend, self._cu(q.device), cu_kv
        )


TokenLayout = Union[DenseLayout, PackedLayout]

__all__ = ["DenseLayout", "PackedLayout", "TokenLayout"]
