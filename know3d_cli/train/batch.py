"""Collating `TrainingSample`s into a batch, and drawing each sample's noise, t and condition dropout.

Every random draw of a sample comes from its own generator seeded with (train.seed, step, slot), in the order t,
DINOv3 dropout, editor dropout, prompt variant, noise. So a sample gets the same randomness whichever process
and micro-batch it lands in, and a resumed run repeats the draws of an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..errors import InputError
from .data_order import seed_sequence
from .dataset import TrainingSample
from .flow_matching import FlowMatching

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainBatch:
    """A micro-batch on the CPU."""

    ids: list[str]
    slots: list[int]  # slot of each sample in its optimiser step
    latent: torch.Tensor  # ss: (B, 8, 16, 16, 16); shape stages: (N, 32) packed rows, sample after sample
    coords: torch.Tensor | None  # shape stages: (N, 4) int32 (batch, x, y, z); ss: None
    counts: list[int]  # rows of each sample (shape stages) or [1] * B (ss)
    dino: torch.Tensor  # (B, T, C_dino)
    hdit: list[torch.Tensor] | None  # per sample (K, h, w, C_edit)

    @property
    def size(self) -> int:
        return len(self.ids)


def collate(samples: list[TrainingSample]) -> TrainBatch:
    """Stack dense latents or pack sparse ones (batch column = position in the batch)."""
    if samples[0].coords is None:
        latent, coords, counts = torch.stack([s.latent for s in samples]), None, [1] * len(samples)
    else:
        latent = torch.cat([s.latent for s in samples])
        coords = torch.cat([torch.cat([torch.full((len(s.coords), 1), i, dtype=torch.int32), s.coords.int()], dim=1)
                            for i, s in enumerate(samples)])
        counts = [len(s.coords) for s in samples]
    lengths = {tuple(s.dino.shape) for s in samples}
    if len(lengths) != 1:
        raise ValueError(f"DINOv3 token shapes differ within a batch: {sorted(lengths)}")
    hdit = [s.hdit for s in samples] if samples[0].hdit is not None else None
    grids = {tuple(h.shape[1:]) for h in hdit or ()}
    if len(grids) > 1:
        raise InputError(f"editor hidden states of one batch have different grids {sorted(grids)} (samples "
                         f"{', '.join(s.id for s in samples)}); build the dataset at one editor resolution")
    return TrainBatch([s.id for s in samples], [s.slot for s in samples], latent, coords, counts,
                      torch.stack([s.dino for s in samples]), hdit)


@dataclass(frozen=True)
class ModelInputs:
    """What one forward pass and its loss need, on the training device."""

    x_t: torch.Tensor  # noisy latent, shape of TrainBatch.latent
    t: torch.Tensor  # (B,) fp32 training time in (0, 1)
    target: torch.Tensor  # velocity target, shape of x_t
    cond: torch.Tensor  # (B, T, C_dino), zero rows where dropped
    editor_tokens: torch.Tensor | None  # (B, h, w, C_edit) chosen variant, zero where dropped
    coords: torch.Tensor | None  # (N, 4) int32
    rows: list[slice] | None  # sparse: row slice of each sample
    dino_dropped: torch.Tensor  # (B,) bool
    editor_dropped: torch.Tensor  # (B,) bool


def draw_inputs(batch: TrainBatch, step: int, seed: int, objective: FlowMatching, p_uncond: float,
                p_uncond_editor: float, device: torch.device) -> ModelInputs:
    """Noise the batch and drop conditions, each sample from its own (seed, step, slot) generator."""
    ts, drop_dino, drop_editor, editor, noises = [], [], [], [], []
    for i, slot in enumerate(batch.slots):
        gen = torch.Generator().manual_seed(seed_sequence(seed, step, slot))
        ts.append(objective.sample_t(gen))
        drop_dino.append(bool(torch.rand(1, generator=gen) < p_uncond))
        drop_editor.append(bool(torch.rand(1, generator=gen) < p_uncond_editor))
        if batch.hdit is not None:
            variants = batch.hdit[i]
            k = int(torch.randint(len(variants), (1,), generator=gen))
            editor.append(torch.zeros_like(variants[k]) if drop_editor[-1] else variants[k])
        shape = batch.latent.shape[1:] if batch.coords is None else (batch.counts[i], batch.latent.shape[1])
        noises.append(torch.randn(shape, generator=gen))

    t = torch.tensor(ts, dtype=torch.float32)
    dino_dropped = torch.tensor(drop_dino)
    cond = torch.where(dino_dropped[:, None, None], torch.zeros_like(batch.dino), batch.dino)
    if batch.coords is None:
        noise = torch.stack(noises)
        t_rows, rows = t.view(-1, *([1] * (batch.latent.ndim - 1))), None
    else:
        noise = torch.cat(noises)
        t_rows = torch.repeat_interleave(t, torch.tensor(batch.counts))[:, None]
        starts = torch.tensor([0, *batch.counts]).cumsum(0).tolist()
        rows = [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]
    x0 = batch.latent
    return ModelInputs(
        x_t=objective.diffuse(x0, noise, t_rows).to(device),
        t=t.to(device),
        target=objective.target(x0, noise).to(device),
        cond=cond.to(device),
        editor_tokens=torch.stack(editor).to(device) if editor else None,
        coords=batch.coords.to(device) if batch.coords is not None else None,
        rows=rows,
        dino_dropped=dino_dropped,
        editor_dropped=torch.tensor(drop_editor),
    )


__all__ = ["ModelInputs", "TrainBatch", "collate", "draw_inputs"]
