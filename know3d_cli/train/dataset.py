"""Reading a Know3D training dataset (`know3d_cli/data/schema.py`) for one training stage.

`TrainingDataset` lists the finished samples of `index/*.jsonl`, checks `dataset.json` against the stage, and loads
one sample's tensors (only those the stage needs) as a `TrainingSample`. Problems with the files are `InputError`s
naming the file (exit 3).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.schema import (
    CONDITION_TENSORS,
    CONDITIONS_FILE,
    DATASET_FILE,
    INDEX_KEYS,
    LATENT_TENSORS,
    LATENTS_FILE,
    SCHEMA_VERSION,
    SS_GRID,
    TensorSpec,
)
from ..data.latents import dense_occupancy
from ..errors import InputError
from ..train_config import TrainStage
from .models import DINO_TENSORS, SHAPE_RESOLUTIONS, LatentNormalization, read_json_object

logger = logging.getLogger(__name__)

_SPECS = {spec.name: spec for spec in (*LATENT_TENSORS, *CONDITION_TENSORS)}


@dataclass(frozen=True)
class IndexEntry:
    id: str
    dir: Path  # the sample folder
    prompts: tuple[str, ...]  # K exact editor instructions; hdit[k] was tapped with prompts[k]


@dataclass(frozen=True)
class TrainingSample:
    """One sample's tensors for one stage (CPU, float32 unless noted)."""

    id: str
    latent: torch.Tensor  # ss: (8, 16, 16, 16) SS latent; shape stages: (N, 32) normalised shape latent
    coords: torch.Tensor | None  # shape stages: (N, 3) int32 latent-grid coordinates; ss: None
    dino: torch.Tensor  # (T, C_dino) DINOv3 tokens of the front view
    hdit: torch.Tensor | None  # (K, h, w, C_edit) editor hidden states, one per prompt variant (None if not needed)
    slot: int  # position of the sample in its optimiser step's batch (keys its noise, t and dropout)


class TrainingDataset(torch.utils.data.Dataset):
    """The samples of a dataset folder, as one stage needs them.

    Args:
        root: the dataset folder.
        stage: the training stage (decides the latent, the DINOv3 resolution and the checks).
        normalization: shape-latent statistics (shape stages), applied on load.
        need_hdit: load the editor hidden states (adapter training).
        max_tokens: shape stages: leave out samples with more latent tokens.
        ss_encoder: ss stage: a `SparseStructureEncoder` whose posterior mean of the sample's occupancy replaces the
            stored `ss_latent` (`train.ss_latents=encoder`; computed on first load, then kept in memory).

    Items are addressed by `(index, slot)` pairs (see `data_order.py`).
    """

    grid_side = SS_GRID  # side of the occupancy grid

    def __init__(self, root: Path, stage: TrainStage, normalization: LatentNormalization | None = None,
                 need_hdit: bool = True, max_tokens: int | None = None, ss_encoder: torch.nn.Module | None = None):
        self.root = Path(root).expanduser()
        self.ss_encoder = ss_encoder
        self._encoded: dict[int, torch.Tensor] = {}
        self.stage = stage
        self.normalization = normalization
        self.need_hdit = need_hdit
        self.dino_name = DINO_TENSORS[stage]
        info = _read_info(self.root)
        if stage in SHAPE_RESOLUTIONS and info["shape_resolution"] is None:
            raise InputError(f"{self.root / DATASET_FILE}: an SS-only dataset (built with data.latents=ss) has no "
                             f"shape latents for train.stage={stage.value}; build it with data.latents=all")
        if stage in SHAPE_RESOLUTIONS and info["shape_resolution"] != SHAPE_RESOLUTIONS[stage]:
            raise InputError(f"{self.root / DATASET_FILE}: shape latents are at {info['shape_resolution']}, "
                             f"train.stage={stage.value} needs {SHAPE_RESOLUTIONS[stage]}; build the dataset at that "
                             "resolution or pick the matching stage")
        self.entries = _read_index(self.root)
        if max_tokens is not None and stage in SHAPE_RESOLUTIONS:
            kept = [e for e in self.entries if _rows(e.dir / LATENTS_FILE, "shape_coords") <= max_tokens]
            if len(kept) < len(self.entries):
                logger.info("train.max_tokens=%d leaves out %d of %d samples", max_tokens,
                            len(self.entries) - len(kept), len(self.entries))
            self.entries = kept
        if not self.entries:
            raise InputError(f"dataset {self.root} has no sample for train.stage={stage.value} (index empty, or every "
                             "sample above train.max_tokens)")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, item: tuple[int, int]) -> TrainingSample:
        index, slot = item
        return self.load(index, slot)

    def load(self, index: int, slot: int = 0) -> TrainingSample:
        entry = self.entries[index]
        conditions = _read_tensors(entry.dir / CONDITIONS_FILE,
                                   [self.dino_name] + (["hdit"] if self.need_hdit else []))
        if self.stage == TrainStage.ss and self.ss_encoder is not None:
            latent, coords = self._encode(index), None
        elif self.stage == TrainStage.ss:
            latent, coords = _read_tensors(entry.dir / LATENTS_FILE, ["ss_latent"])["ss_latent"].float(), None
        else:
            tensors = _read_tensors(entry.dir / LATENTS_FILE, ["shape_coords", "shape_feats"])
            coords, feats = tensors["shape_coords"].int(), tensors["shape_feats"].float()
            if len(coords) != len(feats):
                raise InputError(f"{entry.dir / LATENTS_FILE}: shape_coords has {len(coords)} rows, shape_feats "
                                 f"{len(feats)}")
            latent = self.normalization.normalize(feats) if self.normalization is not None else feats
        hdit = conditions.get("hdit")
        if hdit is not None and hdit.shape[0] != len(entry.prompts):
            raise InputError(f"{entry.dir / CONDITIONS_FILE}: hdit has {hdit.shape[0]} variants, the index lists "
                             f"{len(entry.prompts)} prompts")
        return TrainingSample(entry.id, latent, coords, conditions[self.dino_name].float(), hdit, slot)

    def _encode(self, index: int) -> torch.Tensor:
        """(C, r, r, r) posterior mean of the sample's occupancy under `ss_encoder`."""
        if index not in self._encoded:
            with torch.no_grad():
                grid = dense_occupancy(self.occupancy(index))
                self._encoded[index] = self.ss_encoder(grid).mean[0].float().contiguous()
        return self._encoded[index]

    def occupancy(self, index: int) -> torch.Tensor:
        """(M, 3) int32 occupied voxels of the sample's 64^3 sparse structure (ground truth for previews)."""
        return _read_tensors(self.entries[index].dir / LATENTS_FILE, ["occupancy"])["occupancy"]


def _read_info(root: Path) -> dict[str, Any]:
    path = root / DATASET_FILE
    info = read_json_object(path, f"{root} is not a Know3D dataset: {DATASET_FILE} not found (write one with "
                                  "`know3d data build`)")
    if info.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{path}: schema_version {info.get('schema_version')!r}, this know3d reads {SCHEMA_VERSION}")
    if info.get("shape_resolution") not in (512, 1024, None):
        raise InputError(f"{path}: shape_resolution must be 512, 1024 or null, got {info.get('shape_resolution')!r}")
    return info


def _read_index(root: Path) -> list[IndexEntry]:
    shards = sorted((root / "index").glob("*.jsonl"))
    entries: list[IndexEntry] = []
    seen: set[str] = set()
    for shard in shards:
        for number, line in enumerate(shard.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{shard}:{number}: not a JSON line: {exc}") from exc
            missing = [key for key in INDEX_KEYS if key not in record] if isinstance(record, dict) else INDEX_KEYS
            if missing:
                raise InputError(f"{shard}:{number}: index line lacks {', '.join(missing)}")
            prompts = record["prompts"]
            if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
                raise InputError(f"{shard}:{number}: prompts must be a non-empty list of strings")
            if record["id"] in seen:
                raise InputError(f"{shard}:{number}: duplicate sample id {record['id']!r}")
            seen.add(record["id"])
            folder = Path(record["dir"])
            entries.append(IndexEntry(str(record["id"]), folder if folder.is_absolute() else root / folder,
                                      tuple(prompts)))
    return entries


def _read_tensors(path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The named tensors of a safetensors file, checked against their `TensorSpec` (rank and fixed sizes)."""
    from safetensors import safe_open

    if not path.is_file():
        raise InputError(f"dataset file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            absent = [name for name in names if name not in keys]
            if absent:
                raise InputError(f"{path} lacks tensor(s) {', '.join(absent)}")
            tensors = {name: f.get_tensor(name) for name in names}
    except InputError:
        raise
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise InputError(f"{path} is not a readable safetensors file: {exc}") from exc
    for name, tensor in tensors.items():
        _check(path, _SPECS[name], tensor)
    return tensors


def _check(path: Path, spec: TensorSpec, tensor: torch.Tensor) -> None:
    shape = tuple(tensor.shape)
    ok = len(shape) == len(spec.shape) and all(isinstance(want, str) or want == got
                                               for want, got in zip(spec.shape, shape))
    if not ok:
        raise InputError(f"{path}: {spec.name} has shape {list(shape)}, expected {list(spec.shape)}")


def _rows(path: Path, name: str) -> int:
    """Rows of one tensor, from the file header only."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return int(f.get_slice(name).get_shape()[0])
    except Exception as exc:
        raise InputError(f"{path} is not a readable safetensors file with {name}: {exc}") from exc


__all__ = ["IndexEntry", "TrainingDataset", "TrainingSample"]
