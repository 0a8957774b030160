"""Every released checkpoint (flows, decoders, encoders: all 11) builds from its json and has the released keys and
shapes, so the real files load with strict=True."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from know3d_cli.trellis2.checkpoint import build_model, model_classes, read_checkpoint_json

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "trellis2_checkpoints.json"
ENTRIES = sorted(json.loads(MANIFEST.read_text())["checkpoints"])


def test_the_manifest_lists_every_released_network():
    assert len(ENTRIES) == 11
    classes = {json.loads(MANIFEST.read_text())["checkpoints"][key]["class"] for key in ENTRIES}
    assert classes == set(model_classes())  # nothing registered that is not released, and the reverse


@pytest.mark.parametrize("key", ENTRIES)
def test_released_json_builds_the_released_state_dict(key, released_checkpoint, tmp_path):
    entry = released_checkpoint(key)
    stem = tmp_path / Path(key).name
    Path(f"{stem}.json").write_text(json.dumps({"name": entry["class"], "args": entry["args"]}))
    with torch.device("meta"):
        model = build_model(read_checkpoint_json(stem))
    shapes = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    assert len(shapes) == entry["num_tensors"]
    assert shapes == entry["tensors"]  # what strict loading compares against the file header
