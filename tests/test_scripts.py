"""The GPU benchmark scripts run end to end (tiny networks on the CPU), so they are ready for a GPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_gpu.py"


def test_bench_gpu_smoke_reports_every_stage(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--repeat", "1", "--json",
                          str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    results = report["results"]
    assert results["ss_sampling"]["forwards"] == 22
    assert results["shape_512_sampling"]["forwards"] == results["shape_1024_sampling"]["forwards"] == 21
    assert results["tex_1024_sampling"]["forwards"] == 12
    assert results["shape_decoder"]["voxels"] > 0
    assert report["total_seconds"] > 0 and report["smoke"] is True


def test_bench_encoders_smoke_reports_every_encoder(tmp_path):
    out = tmp_path / "bench.json"
    script = SCRIPT.parent / "bench_encoders.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny networks: threads only contend
    run = subprocess.run([sys.executable, str(script), "--smoke", "--device", "cpu", "--repeat", "1", "--json",
                          str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    results = report["results"]
    for res in (32, 64):
        shape = results[f"shape_encoder_{res}"]
        assert shape["voxels"] == results[f"tex_encoder_{res}"]["voxels"] > shape["latent_tokens"] > 0
        assert report["per_asset_seconds"][str(res)] > 0
    assert results["ss_encoder"]["latent_side"] == 8 and results["ss_encoder"]["occupied"] > 0
    assert report["smoke"] is True and report["precision"] == "fp32"
TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_train.py"


def test_bench_train_gpu_mode_smoke_reports_both_stages(tmp_path):
    out = tmp_path / "train.json"
    run = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--gpu", "--smoke", "--device", "cpu", "--batch", "1",
                          "--repeat", "1", "--warmup", "0", "--json", str(out)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "gpu" and report["smoke"] is True
    for stage in ("ss", "shape_1024"):
        result = report["results"][stage]
        assert result["step_seconds"] > 0 and result["trainable_params"] > 0
        hours = 50_000 * result["step_seconds"] / 3600  # batch 1
        assert abs(result["gpu_hours_per_epoch_50k"] - hours) <= 0.01 + 1e-4 * hours
