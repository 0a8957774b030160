"""The synthetic dataset follows `data/schema.py`, and `TrainingDataset` reads it (and rejects broken indexes)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from know3d_cli.data.schema import CONDITION_TENSORS, DATASET_FILE, DATASET_KEYS, LATENT_TENSORS
from know3d_cli.errors import InputError
from know3d_cli.tiny.trellis2 import RELEASED_PIPELINE_ARGS
from know3d_cli.train.dataset import TrainingDataset
from know3d_cli.train.models import LatentNormalization
from know3d_cli.train_config import TrainStage

from .conftest import SHAPE_TOKENS


def test_synthetic_samples_follow_the_schema(train_data):
    info = json.loads((train_data / DATASET_FILE).read_text())
    assert set(DATASET_KEYS) <= set(info)
    dataset = TrainingDataset(train_data, TrainStage.ss)
    assert len(dataset) == 2
    for entry in dataset.entries:
        sizes: dict[str, int] = {}
        for file, specs in (("latents.safetensors", LATENT_TENSORS), ("conditions.safetensors", CONDITION_TENSORS)):
            with safe_open(str(entry.dir / file), framework="pt") as f:
                for spec in specs:
                    if spec.name == "dino_1024":
                        assert spec.name not in f.keys()  # optional, not written here
                        continue
                    tensor = f.get_tensor(spec.name)
                    assert str(tensor.dtype) == f"torch.{spec.dtype}", spec.name
                    assert len(tensor.shape) == len(spec.shape), spec.name
                    for want, got in zip(spec.shape, tensor.shape):
                        if isinstance(want, int):
                            assert want == got, spec.name
                        elif spec.name != "dino_1024":
                            assert sizes.setdefault(want, got) == got, (spec.name, want)
        assert sizes["N"] == SHAPE_TOKENS and sizes["K"] == len(entry.prompts)
        assert {p.name for p in entry.dir.iterdir()} >= {"sample.json", "front.png", "back.png"}


def test_stage_views_of_a_sample(train_data):
    ss = TrainingDataset(train_data, TrainStage.ss).load(1, slot=5)
    assert ss.latent.shape == (8, 16, 16, 16) and ss.coords is None and ss.slot == 5
    assert ss.dino.dtype == torch.float32 and ss.hdit.shape[0] == 2
    norm = RELEASED_PIPELINE_ARGS["shape_slat_normalization"]
    shape = TrainingDataset(train_data, TrainStage.shape_512,
                            LatentNormalization(torch.tensor(norm["mean"]), torch.tensor(norm["std"])),
                            need_hdit=False).load(0)
    assert shape.latent.shape == (SHAPE_TOKENS, 32) and shape.hdit is None
    assert abs(shape.latent.mean().item()) < 0.3 and 0.7 < shape.latent.std().item() < 1.3  # normalised
    assert int(shape.coords.max()) < 32
    with pytest.raises(InputError, match="max_tokens"):
        TrainingDataset(train_data, TrainStage.shape_512, max_tokens=SHAPE_TOKENS - 1)


@pytest.mark.parametrize("line,message", [
    ('{"id": "a", "dir": "samples/a"}', "lacks prompts"),
    ('{"id": "a", "dir": "samples/a", "prompts": []}', "non-empty list"),
    ("not json", "not a JSON line"),
])
def test_broken_index_lines_are_input_errors(train_data, tmp_path, line, message):
    copy = tmp_path / "data"
    shutil.copytree(train_data, copy)
    (copy / "index" / "extra.jsonl").write_text(line + "\n")
    with pytest.raises(InputError, match=message):
        TrainingDataset(copy, TrainStage.ss)


def test_duplicate_ids_and_wrong_schema_version(train_data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(train_data, copy)
    (index,) = (copy / "index").glob("*.jsonl")
    shutil.copy(index, copy / "index" / "another-shard.jsonl")
    with pytest.raises(InputError, match="duplicate sample id"):
        TrainingDataset(copy, TrainStage.ss)
    info = json.loads((copy / DATASET_FILE).read_text())
    (copy / DATASET_FILE).write_text(json.dumps({**info, "schema_version": 99}))
    with pytest.raises(InputError, match="schema_version"):
        TrainingDataset(copy, TrainStage.ss)


def test_an_ss_only_dataset_feeds_the_ss_stage_only_and_encoder_latents_replace_the_stored_ones(train_data, tmp_path):
    copy = tmp_path / "ss-only"
    shutil.copytree(train_data, copy)
    info = json.loads((copy / DATASET_FILE).read_text())
    (copy / DATASET_FILE).write_text(json.dumps({**info, "shape_resolution": None}))  # as data.latents=ss writes it
    with pytest.raises(InputError, match="SS-only"):
        TrainingDataset(copy, TrainStage.shape_512)

    class Encoder(torch.nn.Module):  # a stand-in SS encoder: the occupancy's mean per 16^3 cell, 8 channels
        calls = 0

        def forward(self, grid):
            Encoder.calls += 1
            pooled = torch.nn.functional.avg_pool3d(grid, 16).expand(-1, 8, -1, -1, -1)
            return type("Posterior", (), {"mean": pooled})()

    dataset = TrainingDataset(copy, TrainStage.ss, ss_encoder=Encoder())
    occupancy = dataset.occupancy(0).long()
    latent = dataset.load(0).latent
    assert latent.shape == (8, 4, 4, 4)
    cell = tuple((occupancy[0] // 16).tolist())
    assert latent[0][cell] > 0 and torch.equal(dataset.load(0).latent, latent) and Encoder.calls == 1  # cached
