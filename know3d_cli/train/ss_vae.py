"""Training the sparse-structure VAE (`train.trainable=ss_vae`): encoder + decoder on the samples' 64^3 occupancy.

Objective, as upstream's sparse-structure VAE trainer: encode the binary grid to the posterior (mean, logvar), draw
`z = mean + exp(logvar / 2) eps`, decode to occupancy logits, and minimise a reconstruction term (`train.ss_vae.loss`:
binary cross-entropy of the logits, 1 - soft Dice of their sigmoid, or L1 of their sigmoid, each over the whole
micro-batch) plus `lambda_kl` times the KL term `0.5 mean(mean^2 + exp(logvar) - logvar - 1)`. eps of each sample
comes from its own (train.seed, step, slot) generator, as the flows' noise does (`batch.py`), so resumed and
distributed runs draw the same.

The occupancy is the dataset's `occupancy` tensor (what `know3d data build` encodes with the SS encoder), as a dense
`(1, 64, 64, 64)` grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.latents import dense_occupancy
from ..train_config import SsVaeLoss, TrainStage
from .data_order import seed_sequence
from .dataset import TrainingDataset

logger = logging.getLogger(__name__)

# channels-last 3-D convolutions: their backward pass is an order of magnitude faster on CPUs (oneDNN)
CHANNELS_LAST = torch.channels_last_3d


@dataclass(frozen=True)
class OccupancySample:
    id: str
    grid: torch.Tensor  # (1, 64, 64, 64) float32, 1 where occupied
    slot: int  # position in its optimiser step's batch (keys its noise)


@dataclass(frozen=True)
class OccupancyBatch:
    ids: list[str]
    slots: list[int]
    grid: torch.Tensor  # (B, 1, 64, 64, 64)

    @property
    def size(self) -> int:
        return len(self.ids)


class OccupancyDataset(TrainingDataset):
    """The samples of a dataset folder as occupancy grids (nothing else is read)."""

    def __init__(self, root):
        super().__init__(root, TrainStage.ss, need_hdit=False)

    def __getitem__(self, item: tuple[int, int]) -> OccupancySample:
        index, slot = item
        return OccupancySample(self.entries[index].id, dense_occupancy(self.occupancy(index))[0], slot)


def collate_occupancy(samples: list[OccupancySample]) -> OccupancyBatch:
    return OccupancyBatch([s.id for s in samples], [s.slot for s in samples], torch.stack([s.grid for s in samples]))


@dataclass(frozen=True)
class SsVaeInputs:
    """One micro-batch of VAE training on the device."""

    grid: torch.Tensor  # (B, 1, R, R, R) float occupancy
    noise: torch.Tensor  # (B, C, r, r, r) posterior noise eps


def draw_vae_inputs(batch: OccupancyBatch, step: int, seed: int, latent_shape: tuple[int, ...],
                    device: torch.device) -> SsVaeInputs:
    """Posterior noise for each sample from its (seed, step, slot) generator."""
    noise = [torch.randn(latent_shape, generator=torch.Generator().manual_seed(seed_sequence(seed, step, slot)))
             for slot in batch.slots]
    return SsVaeInputs(batch.grid.to(device), torch.stack(noise).to(device))


class SsVaeTrainingModule(nn.Module):
    """Encoder + decoder: occupancy and eps -> (logits, posterior mean, posterior logvar).

    Args:
        encoder: `SparseStructureEncoder`.
        decoder: `SparseStructureDecoder`.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder.to(memory_format=CHANNELS_LAST)
        self.decoder = decoder.to(memory_format=CHANNELS_LAST)

    def latent_shape(self, side: int) -> tuple[int, int, int, int]:
        """(C, r, r, r) latent of a side^3 grid."""
        r = side // self.encoder.downsample_factor
        return (self.encoder.latent_channels, r, r, r)

    def forward(self, grid: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """grid (B, 1, R, R, R), noise (B, C, r, r, r) -> logits (B, 1, R, R, R), mean and logvar (B, C, r, r, r)."""
        posterior = self.encoder(grid.contiguous(memory_format=CHANNELS_LAST))
        z = posterior.mean + posterior.std * noise
        return self.decoder(z), posterior.mean, posterior.logvar


@dataclass(frozen=True)
class SsVaeObjective:
    loss: SsVaeLoss
    lambda_kl: float

    def __call__(self, model: nn.Module, inputs: SsVaeInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar loss with gradient, (B,) detached per-sample losses)."""
        logits, mean, logvar = model(inputs.grid, inputs.noise)
        logits, target = logits.float(), inputs.grid.float()
        recon, per_sample = self._reconstruction(logits, target)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0)
        loss = recon + self.lambda_kl * kl.mean()
        return loss, (per_sample + self.lambda_kl * kl.detach().flatten(1).mean(dim=1))

    def _reconstruction(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.loss == SsVaeLoss.bce:
            err = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            return err.mean(), err.detach().flatten(1).mean(dim=1)
        prob = torch.sigmoid(logits)
        if self.loss == SsVaeLoss.l1:
            err = (prob - target).abs()
            return err.mean(), err.detach().flatten(1).mean(dim=1)
        return soft_dice_loss(prob, target), torch.stack([soft_dice_loss(p, t) for p, t in
                                                          zip(prob.detach(), target)])


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - (2 sum(p y) + 1) / (sum p + sum y + 1) over every element (upstream's smoothed Dice)."""
    return 1.0 - (2.0 * (prob * target).sum() + 1.0) / (prob.sum() + target.sum() + 1.0)


__all__ = ["OccupancyBatch", "OccupancyDataset", "OccupancySample", "SsVaeInputs", "SsVaeObjective",
           "SsVaeTrainingModule", "collate_occupancy", "draw_vae_inputs", "soft_dice_loss"]
