"""`accelerate launch` with 2 CPU processes (gloo) trains like one process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .conftest import train_overrides

REPO = Path(__file__).resolve().parents[2]
# Two steps at lr 1e-3: the same samples, t and noise reach the same gradients up to float summation order (batch of
# 2 in one process vs 1 + 1 averaged by DDP). Adam normalises each element, so near-zero gradients can differ by
# O(lr * 1e-2) after a step; parameters are compared at 5e-5, losses at 1e-5 relative.
PARAM_ATOL = 5e-5
LOSS_RTOL = 1e-5


def launch(args: list[str], processes: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if processes == 1:
        cmd = [sys.executable, "-m", "know3d_cli", "train", *args]
    else:
        accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
        if accelerate is None:
            pytest.skip("the accelerate launcher is not installed")
        cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "know3d_cli", "train", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def test_two_processes_match_one_with_the_same_global_batch(tiny_root, train_data, tmp_path):
    extra = ["train=shape_512", "train.steps=2", "train.optimizer.lr=1e-3", "train.checkpoint_every=2", "--quiet"]
    launched = {p: launch(train_overrides(tiny_root, train_data, tmp_path / f"p{p}", *extra), p) for p in (1, 2)}
    runs = {}
    for processes, proc in launched.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        out = tmp_path / f"p{processes}"
        events = [json.loads(line) for line in stdout.splitlines()]  # stdout: JSON lines of rank 0 only
        assert events[0]["event"] == "train_start" and events[0]["processes"] == processes
        assert [e["event"] for e in events].count("train_done") == 1
        runs[processes] = (events, load_file(out / "checkpoints" / "step-0000002" / "trainable.safetensors"))
    losses = {p: [e["loss"] for e in events if e["event"] == "train"] for p, (events, _) in runs.items()}
    assert len(losses[1]) == 2
    torch.testing.assert_close(torch.tensor(losses[2]), torch.tensor(losses[1]), rtol=LOSS_RTOL, atol=0)
    single, double = runs[1][1], runs[2][1]
    assert single.keys() == double.keys()
    assert any(single[k].abs().max() > 0 for k in single if k.endswith("to_out.weight"))  # zero at init: trained
    for key in single:
        torch.testing.assert_close(double[key], single[key], atol=PARAM_ATOL, rtol=0, msg=key)
