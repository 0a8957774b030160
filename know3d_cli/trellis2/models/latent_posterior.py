"""`LatentPosterior`: the diagonal Gaussian q(z | x) the TRELLIS.2 VAE encoders return."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sparse.tensor import SparseTensor


@dataclass(frozen=True)
class LatentPosterior:
    """Mean and log-variance of a latent, dense (sparse-structure VAE) or on sparse voxels (SC-VAEs).

    The encoders compute both in fp32. Training data uses the mean (the reference toolkit encodes with
    `sample_posterior=False`); `sample` draws `mean + exp(logvar / 2) * eps` with an explicit generator.
    """

    mean: torch.Tensor  # dense: (B, C, R, R, R); sparse: (N, C), one row per latent voxel
    logvar: torch.Tensor  # same shape as mean
    coords: torch.Tensor | None = None  # sparse only: (N, 4) int32 (batch, x, y, z) latent-grid coords of the rows

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw, shaped like `mean`; `generator` must live on `mean.device` (None: torch's global one)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def sparse(self, feats: torch.Tensor) -> SparseTensor:
        """`feats` (N, C), e.g. `mean` or a `sample`, on the posterior's voxels (what the SC-VAE decoders take)."""
        if self.coords is None:
            raise ValueError("a dense posterior has no voxel coords; use its (B, C, R, R, R) tensors directly")
        return SparseTensor(feats, self.coords)


__all__ = ["LatentPosterior"]
