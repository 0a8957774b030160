"""The back-part pipeline of `scripts/bench_backpart.py`, shrunk: its training and scoring stages connect.

The benchmark's own chain on two synthetic samples (the data build of the procedural assets is tested in
`tests/data`): SS VAE from scratch -> export -> SS flow from scratch on the trained encoder's latents -> export ->
the trained model folders -> Know3D adapter on H_DiT -> export -> `generate --mode know3d` at `pipeline_type=ss` ->
back-region IoU and part identification against the ground truth; then `--flow-check` on the trained flow.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@dataclass(frozen=True)
class _Spec:  # what the benchmark reads of a procedural AssetSpec
    id: str
    part: str
    caption: str = "a tall thin fin"
    base: str = "synthetic"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("bench_backpart")


def test_every_stage_connects(bench, tiny_root, train_data, tmp_path, one_thread):
    from know3d_cli.train.checkpoint import load_training_checkpoint, resolve_checkpoint

    args = argparse.Namespace(vae_steps=1, vae_batch=1, flow_steps=1, adapter_steps=1, batch=2)
    models = bench.train_models(args, tmp_path, tiny_root, train_data)
    for run in ("run-vae", "run-flow", "run-adapter"):  # each trained what it should, from what it should
        state = load_training_checkpoint(resolve_checkpoint("latest", tmp_path / run))
        assert state.step == 1
    vae = load_training_checkpoint(resolve_checkpoint("latest", tmp_path / "run-vae")).identity
    assert vae["trainable"] == "ss_vae" and vae["vae"]["encoder"]["args"]["channels"] == [4, 8, 16, 32]
    assert (models["adapter"] / "ss.safetensors").is_file()

    # the benchmark names a reference by what follows "<base>-" in its id: here the two samples' numbers
    truth = bench.ground_truth(train_data, [_Spec("synthetic-0000", "0000"), _Spec("synthetic-0001", "0001")])
    specs = [_Spec("synthetic-0000", "0000")]
    scores = bench.evaluate(tmp_path, tiny_root, models, specs, train_data, truth, ("know3d",))
    (score,) = scores
    assert score["mode"] == "know3d" and score["identified"] in ("0000", "0001") and 0.0 <= score["back_iou"] <= 1.0
    coords = np.load(bench.occupancy_dir(tmp_path, "", "know3d") / "synthetic-0000.npy")
    assert coords.ndim == 2 and coords.shape[1] == 3 and len(coords) > 0
    assert bench.table(scores)["know3d"]["assets"] == 1

    for split in ("train", "test"):  # `--flow-check` reads both datasets of the work folder
        (tmp_path / f"data-{split}").symlink_to(train_data)
    check = bench.flow_check(tmp_path, times=(0.5, 1.0), euler_steps=2)
    for split in ("train", "held_out"):
        rows = check[split]
        assert set(rows["x0_error"]) == set(rows["x0_iou"]) == {"0.5", "1.0"}
        assert set(rows["condition_effect"]) == {"own", "other", "zeros", "mean_latent"}
        assert all(v >= 0 for v in rows["condition_effect"].values()) and 0 <= rows["sample_iou"] <= 1
    assert check["train"]["samples"] == 1 and check["held_out"]["samples"] == 2  # every 4th training sample
