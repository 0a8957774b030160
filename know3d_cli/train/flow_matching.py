"""TRELLIS.2's rectified-flow training objective.

    x_t = (1 - t) x0 + (sigma_min + (1 - sigma_min) t) eps,    target v = (1 - sigma_min) eps - x0,

loss = mean squared error between the predicted and target velocity over every latent element of the batch
(sparse latents: every voxel of every sample, as upstream). The model sees time `1000 t`. t is drawn per sample
from the configured schedule: logit-normal `sigmoid(N(mean, std))` (released SS recipe: mean 1, std 1) or uniform
(released shape recipes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..train_config import TimeSchedule, TimeScheduleConfig
from .models import MODEL_TIME_SCALE

if TYPE_CHECKING:
    from .batch import ModelInputs

logger = logging.getLogger(__name__)

NUM_T_BINS = 10  # loss is also reported per tenth of [0, 1] in t


@dataclass(frozen=True)
class FlowMatching:
    """The objective's constants: noise floor and training-time distribution."""

    sigma_min: float
    schedule: TimeSchedule
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def from_config(cls, sigma_min: float, cfg: TimeScheduleConfig) -> FlowMatching:
        return cls(sigma_min, TimeSchedule(cfg.name), cfg.mean, cfg.std)

    def sample_t(self, generator: torch.Generator) -> float:
        """One training time in (0, 1) from `generator`."""
        if self.schedule == TimeSchedule.uniform:
            return float(torch.rand(1, generator=generator))
        return float(torch.sigmoid(torch.randn(1, generator=generator) * self.std + self.mean))

    def diffuse(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t for x0 and noise of the same shape; t broadcasts against them (e.g. (B, 1, 1, 1, 1) or (N, 1))."""
        return (1.0 - t) * x0 + (self.sigma_min + (1.0 - self.sigma_min) * t) * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The velocity the model should predict."""
        return (1.0 - self.sigma_min) * noise - x0

    @staticmethod
    def model_time(t: torch.Tensor) -> torch.Tensor:
        """(B,) t -> the flows' time input."""
        return t * MODEL_TIME_SCALE


def training_loss(model: Callable[..., torch.Tensor], objective: FlowMatching, inputs: ModelInputs
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of one micro-batch and its per-sample values: `model(x_t, 1000 t, cond, editor_tokens, coords)` -> velocity.

    Returns:
        (scalar loss with gradient, (B,) detached per-sample losses).
    """
    pred = model(inputs.x_t, objective.model_time(inputs.t), inputs.cond, inputs.editor_tokens, inputs.coords)
    return mse(pred, inputs.target), per_sample_mse(pred, inputs.target, inputs.rows)


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element, in fp32 (the training loss)."""
    return F.mse_loss(pred.float(), target.float())


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor, rows: list[slice] | None = None) -> torch.Tensor:
    """(B,) mean squared error of each sample: over its dense elements, or over its rows of a sparse latent."""
    err = (pred.detach().float() - target.float()) ** 2
    if rows is None:
        return err.flatten(1).mean(dim=1)
    return torch.stack([err[r].mean() for r in rows])


def t_bin_means(t: np.ndarray, losses: np.ndarray, bins: int = NUM_T_BINS) -> dict[str, float]:
    """Mean loss per t bin `[i / bins, (i + 1) / bins)` that has samples, keyed "0".."bins-1"."""
    index = np.clip((np.asarray(t) * bins).astype(np.int64), 0, bins - 1)
    return {str(i): float(np.mean(losses[index == i])) for i in range(bins) if (index == i).any()}


__all__ = ["NUM_T_BINS", "FlowMatching", "mse", "per_sample_mse", "t_bin_means", "training_loss"]
