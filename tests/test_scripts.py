"""The benchmark scripts run end to end on tiny inputs (the GPU one on tiny networks on the CPU), so they stay ready."""

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
def test_bench_ovoxel_and_bench_render_smoke(tmp_path):
    scripts = SCRIPT.parent
    env = {**os.environ, "PYTHONPATH": str(scripts.parent), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ovoxel.json"
    run = subprocess.run([sys.executable, str(scripts / "bench_ovoxel.py"), "--faces", "2000", "--texture-size", "32",
                          "--resolution", "32", "--json", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    (result,) = json.loads(out.read_text())["results"]
    assert result["resolution"] == 32 and result["voxels"] > 100 and result["faces"] >= 1900
    out = tmp_path / "render.json"
    run = subprocess.run([sys.executable, str(scripts / "bench_render.py"), "--faces", "2000", "--texture-size", "32",
                          "--size", "32", "--frames", "2", "--json", str(out)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert report["faces"] >= 1900 and report["results"]["turntable_2_s"] > 0 and report["opengl"]


def test_bench_data_build_smoke_in_both_modes(tmp_path, tiny_root, monkeypatch, one_thread):
    import importlib

    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # in-process: the script imports its sibling bench modules
    bench = importlib.import_module("bench_data_build")
    out = tmp_path / "cpu.json"
    monkeypatch.setattr(sys, "argv", ["bench_data_build.py", "--smoke", "--tiny-root", str(tiny_root), "--json",
                                      str(out)])
    bench.main()
    report = json.loads(out.read_text())
    steps = report["step_seconds"]
    assert set(steps) == {"asset", "ovoxel", "encoders", "render", "dinov3", "mllm", "editor"}
    assert steps["ovoxel"] > 0 and steps["encoders"] > 0 and steps["editor"] > 0
    assert report["dominant"] == max(steps, key=steps.get) and abs(sum(report["step_share"].values()) - 1) < 0.01
    assert report["voxels"] > report["shape_tokens"] > 0 and report["mode"] == "cpu"
    out = tmp_path / "gpu.json"
    monkeypatch.setattr(sys, "argv", ["bench_data_build.py", "--gpu", "--smoke", "--device", "cpu", "--json",
                                      str(out)])
    bench.main()
    report = json.loads(out.read_text())
    results = report["results"]
    assert results["hdit_per_variant"]["forwards"] == 21  # default tap: step 10 of 40 with true CFG, preview=none
    assert results["hdit_per_variant"]["seconds"] == results["editor_forward"]["seconds"] * 21
    assert results["shape_encoder_512"]["voxels"] > results["shape_encoder_512"]["latent_tokens"] > 0
    parts = sum(results[f"{k}_encoder_512"]["seconds"] for k in ("shape", "tex", "ss")) + \
        results["dinov3_512"]["seconds"] + results["dinov3_1024"]["seconds"] + 2 * results["hdit_per_variant"]["seconds"]
    assert report["per_asset_seconds"]["512"] == parts > 0
