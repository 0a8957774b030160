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
