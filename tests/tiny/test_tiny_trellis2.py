"""The tiny TRELLIS.2 folders have the released layout, names, argument keys, key names and dtypes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from scipy import ndimage

from know3d_cli.tiny.trellis2 import (
    SS_DECODER_NAME,
    TINY_SS_OCCUPANCY,
    released_models_map,
    tiny_ss_decoder,
    write_tiny_trellis2,
)
from know3d_cli.trellis2.checkpoint import load_model
from know3d_cli.trellis2.pipeline_spec import read_pipeline_json


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_tiny_trellis2(tmp_path_factory.mktemp("tiny_t2"), seed=0, cond_channels=32)


def _dtypes(path) -> set[str]:
    with safe_open(str(path), framework="pt") as f:
        return {f.get_slice(k).get_dtype() for k in f.keys()}


def _shape_of_keys(keys) -> set[str]:
    """Key names with block indices replaced, so a 2-block tiny model compares with the 30-block release."""
    return {re.sub(r"(?<=\.)\d+(?=\.)", "#", k) for k in keys}


def test_layout_and_names_are_the_release(folders, released_checkpoint):
    trellis, large = folders
    spec = read_pipeline_json(trellis)
    assert dict(spec.models) == released_models_map()
    for role, path in released_models_map().items():
        stem = spec.checkpoint(role, trellis, large)
        manifest_key = path.removeprefix("microsoft/") if path.startswith("microsoft/") else f"TRELLIS.2-4B/{path}"
        released = released_checkpoint(manifest_key)
        config = json.loads(Path(f"{stem}.json").read_text())
        assert config["name"] == released["class"]
        assert set(config["args"]) - {"dtype", "block_args"} == set(released["args"]) - {"dtype", "block_args"}
        with safe_open(f"{stem}.safetensors", framework="pt") as f:
            assert _shape_of_keys(f.keys()) == _shape_of_keys(released["tensors"]), role


def test_stored_dtypes_are_the_release(folders):
    trellis, large = folders
    ckpts = trellis / "ckpts"
    assert _dtypes(ckpts / "ss_flow_img_dit_1_3B_64_bf16.safetensors") == {"BF16"}
    assert _dtypes(ckpts / "shape_dec_next_dc_f16c32_fp16.safetensors") == {"F16"}
    assert _dtypes(large / "ckpts" / f"{SS_DECODER_NAME}.safetensors") == {"F16", "F32"}


def test_deterministic_and_idempotent(folders, tmp_path):
    trellis, _ = folders
    first = trellis / "ckpts" / "tex_dec_next_dc_f16c32_fp16.safetensors"
    mtime = first.stat().st_mtime_ns
    write_tiny_trellis2(trellis.parent, seed=0, cond_channels=32)
    assert first.stat().st_mtime_ns == mtime  # not rewritten
    other, _ = write_tiny_trellis2(tmp_path, seed=0, cond_channels=32)
    assert (other / "ckpts" / first.name).read_bytes() == first.read_bytes()


def test_ss_decoder_makes_one_central_blob(folders):
    _, large = folders
    decoder = load_model(large / "ckpts" / SS_DECODER_NAME, precision="fp32")
    with torch.no_grad():
        logits = decoder(torch.randn(1, 8, 16, 16, 16, generator=torch.Generator().manual_seed(9)))
    occupied = (logits[0, 0] > 0).numpy()
    assert TINY_SS_OCCUPANCY / 2 < occupied.mean() < TINY_SS_OCCUPANCY * 2
    labels, count = ndimage.label(occupied)
    assert count == 1
    assert not (occupied[0].any() or occupied[-1].any() or occupied[:, 0].any() or occupied[:, :, -1].any())
    assert np.allclose(np.argwhere(occupied).mean(axis=0), 31.5, atol=4)


def test_shaped_decoder_is_deterministic():
    a, b = tiny_ss_decoder(seed=3), tiny_ss_decoder(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
