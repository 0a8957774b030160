"""Validation previews: sample the trained flow on fixed dataset samples and picture the result.

Every `train.validation.every` steps the main process samples the first `train.validation.samples` samples with the
stage's sampler (pipeline.json settings and the `trellis2.<ss|shape>` overrides; CFG against zero DINOv3 and zero
editor tokens; fixed noise), decodes the latent (SS: the sparse-structure decoder's occupancy at 64^3; shape: the
shape decoder's final voxels) and writes `<output_dir>/validation/step-NNNNNNN.png`: one row per sample with the
ground-truth occupancy from the front and from behind, then the sample from the front and from behind. The SS stage
also reports the occupancy IoU with the ground truth. A sparse-structure VAE run (`ReconstructionPreview`) pictures
and scores its reconstructions of the samples' occupancy instead.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_write
from ..render import contact_sheet, front_and_back
from ..train_config import TrainStage
from .data_order import seed_sequence
from .dataset import TrainingDataset
from .models import SHAPE_RESOLUTIONS, LatentNormalization, SamplerSettings, SparseTensor, TrellisFolder, sample
from .network import FlowTrainingModule

logger = logging.getLogger(__name__)

VALIDATION_DIR = "validation"
SS_GRID = 64  # side of the decoded occupancy
PICTURE_SIDE = 128
_VALIDATION_STREAM = 0x7661


class ValidationPreview:
    """Samples, decodes and pictures `count` fixed dataset samples.

    Args:
        folder: the TRELLIS.2 folders (decoders).
        stage: the trained stage.
        dataset: the training dataset (its first samples are previewed).
        count: samples per preview.
        settings: sampler settings.
        normalization: shape-latent statistics (shape stages).
        device: where sampling runs.
        seed: `train.seed` (fixes the noise of every preview).
    """

    def __init__(self, folder: TrellisFolder, stage: TrainStage, dataset: TrainingDataset, count: int,
                 settings: SamplerSettings, normalization: LatentNormalization | None, device: torch.device, seed: int):
        self.stage = stage
        self.dataset = dataset
        self.indices = list(range(min(count, len(dataset))))
        self.settings = settings
        self.normalization = normalization
        self.device = device
        self.seed = seed
        role = "sparse_structure_decoder" if stage == TrainStage.ss else "shape_slat_decoder"
        self.decoder = folder.load_decoder(role, device)
        if stage != TrainStage.ss:
            self.decoder.set_resolution(SHAPE_RESOLUTIONS[stage])

    @torch.no_grad()
    def run(self, module: FlowTrainingModule, step: int, output_dir: Path,
            autocast: Callable[[], AbstractContextManager]) -> dict[str, Any]:
        """Write the preview of `module` (as it is now) and return the `validation` metrics record."""
        rows, ious = [], []
        with _eval_mode(module):
            for index in self.indices:
                item = self.dataset.load(index)
                truth = self.dataset.occupancy(index).numpy()
                with autocast():
                    coords, resolution = self._sample_and_decode(module, item, index)
                rows.append([*front_and_back(truth, SS_GRID, size=PICTURE_SIDE),
                             *front_and_back(coords, resolution, size=PICTURE_SIDE)])
                if self.stage == TrainStage.ss:
                    ious.append(occupancy_iou(coords, truth, SS_GRID))
        return _write_sheet(rows, ["truth front", "truth back", "sample front", "sample back"], ious, step,
                            output_dir)

    def _sample_and_decode(self, module: FlowTrainingModule, item, index: int) -> tuple[np.ndarray, int]:
        """(M, 3) voxel coordinates of the decoded sample, and the grid side they live on."""
        generator = torch.Generator().manual_seed(seed_sequence(_VALIDATION_STREAM, self.seed, index))
        cond = item.dino[None].to(self.device)
        editor = item.hdit[:1].to(self.device) if (item.hdit is not None and module.adapter is not None) else None
        negative = (torch.zeros_like(cond), None if editor is None else torch.zeros_like(editor))
        if self.stage == TrainStage.ss:
            noise = torch.randn(1, *item.latent.shape, generator=generator).to(self.device)

            def velocity(x, t, c):
                return module(x, t, c[0], c[1]).float()
        else:
            coords = torch.cat([torch.zeros(len(item.coords), 1, dtype=torch.int32), item.coords], dim=1)
            noise = SparseTensor(torch.randn(item.latent.shape, generator=generator), coords).to(self.device)

            def velocity(x, t, c):
                return x.replace(module(x.feats, t, c[0], c[1], coords=x.coords).float())

        latent = sample(velocity, noise, [(cond, editor)], negative, self.settings).x
        if self.stage == TrainStage.ss:
            logits = self.decoder(latent.float())[0, 0]
            return torch.argwhere(logits > 0).cpu().numpy(), SS_GRID
        feats = self.normalization.denormalize(latent.feats.float()) if self.normalization is not None else latent.feats
        voxels = self.decoder.dual_grid(self.decoder(latent.replace(feats)))[0]
        return voxels.coords.cpu().numpy(), SHAPE_RESOLUTIONS[self.stage]


class ReconstructionPreview:
    """The SS VAE's reconstructions (posterior mean, logits > 0) of the first `count` samples, and their IoU.

    Args:
        dataset: an `OccupancyDataset`.
        count: samples per preview.
        device: where the VAE runs.
    """

    def __init__(self, dataset, count: int, device: torch.device):
        self.dataset = dataset
        self.indices = list(range(min(count, len(dataset))))
        self.device = device

    @torch.no_grad()
    def run(self, module, step: int, output_dir: Path,
            autocast: Callable[[], AbstractContextManager]) -> dict[str, Any]:
        rows, ious = [], []
        with _eval_mode(module):
            for index in self.indices:
                truth = self.dataset.occupancy(index).numpy()
                grid = self.dataset[index, 0].grid[None].to(self.device)
                with autocast():
                    logits = module.decoder(module.encoder(grid).mean).float()
                coords = torch.argwhere(logits[0, 0] > 0).cpu().numpy()
                rows.append([*front_and_back(truth, SS_GRID, size=PICTURE_SIDE),
                             *front_and_back(coords, SS_GRID, size=PICTURE_SIDE)])
                ious.append(occupancy_iou(coords, truth, SS_GRID))
        return _write_sheet(rows, ["truth front", "truth back", "recon front", "recon back"], ious, step, output_dir)


@contextmanager
def _eval_mode(module) -> Iterator[None]:
    """`module` in eval mode for the block, then back in the mode it was in."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _write_sheet(rows: list, titles: list[str], ious: list[float], step: int, output_dir: Path) -> dict[str, Any]:
    """Write `<output_dir>/validation/step-NNNNNNN.png`; the `validation` metrics record."""
    sheet = contact_sheet(rows, titles=titles)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    path = Path(output_dir) / VALIDATION_DIR / f"step-{step:07d}.png"
    atomic_write(path, buf.getvalue())
    record: dict[str, Any] = {"event": "validation", "step": step, "file": str(path), "samples": len(rows)}
    if ious:
        record["occupancy_iou"] = float(np.mean(ious))
    return record


def occupancy_iou(coords: np.ndarray, truth: np.ndarray, grid: int) -> float:
    """Intersection over union of two voxel sets on a grid^3 grid (1.0 when both are empty)."""
    a = np.zeros((grid,) * 3, bool)
    b = np.zeros((grid,) * 3, bool)
    if len(coords):
        a[tuple(np.asarray(coords).T)] = True
    if len(truth):
        b[tuple(np.asarray(truth).T)] = True
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


__all__ = ["VALIDATION_DIR", "ReconstructionPreview", "ValidationPreview", "occupancy_iou"]
