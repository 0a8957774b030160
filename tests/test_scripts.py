"""The benchmark scripts run end to end on tiny inputs (the GPU one on tiny networks on the CPU), so they stay ready.

They run in the test process, as `python scripts/<name>.py ARGS` would run them (each in a subprocess spent most of
its time importing torch and the package), on one torch thread (`one_thread`): tiny networks gain nothing from more.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def script(monkeypatch):
    """`script(name, *args)`: run `scripts/<name>.py args` in this process; returns the script's module."""
    monkeypatch.syspath_prepend(str(SCRIPTS))  # the scripts import their sibling bench modules

    def run(name: str, *args: object) -> ModuleType:
        module = importlib.import_module(name)
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *map(str, args)])
        module.main()
        return module

    return run


def test_bench_gpu_smoke_reports_every_stage(tmp_path, script):
    out = tmp_path / "bench.json"
    script("bench_gpu", "--smoke", "--device", "cpu", "--repeat", "1", "--json", out)
    report = json.loads(out.read_text())
    results = report["results"]
    assert results["ss_sampling"]["forwards"] == 22
    assert results["shape_512_sampling"]["forwards"] == results["shape_1024_sampling"]["forwards"] == 21
    assert results["tex_1024_sampling"]["forwards"] == 12
    assert results["shape_decoder"]["voxels"] > 0
    assert results["mesh_extraction"]["faces"] > 0  # the forced-surface input meshes into quads
    assert results["ss_flow_forward"]["dtype"] == "torch.float32"  # a CPU runs exact fp32
    assert report["total_seconds"] > 0 and report["smoke"] is True


def test_bench_gpu_builds_the_full_size_flows_in_their_released_block_dtype(monkeypatch):
    """The checkpoint manifest stores the dtype beside the args; without it the flows were built fp32 (the 10-20x
    slow first H200 run)."""
    import torch

    monkeypatch.syspath_prepend(str(SCRIPTS))
    bench = importlib.import_module("bench_gpu")
    for name in ("ss_flow", "shape_512", "shape_1024", "tex_1024"):
        cls = bench.RELEASED[name][0]
        with torch.device("meta"):
            flow = cls(**bench.network_args(name, smoke=False))
        assert flow.reference_dtype == torch.bfloat16, name
    assert "dtype" not in bench.network_args("shape_decoder", smoke=False)  # decoders use `use_fp16`


def test_bench_encoders_smoke_reports_every_encoder(tmp_path, script):
    out = tmp_path / "bench.json"
    script("bench_encoders", "--smoke", "--device", "cpu", "--repeat", "1", "--json", out)
    report = json.loads(out.read_text())
    results = report["results"]
    for res in (32, 64):
        shape = results[f"shape_encoder_{res}"]
        assert shape["voxels"] == results[f"tex_encoder_{res}"]["voxels"] > shape["latent_tokens"] > 0
        assert report["per_asset_seconds"][str(res)] > 0
    assert results["ss_encoder"]["latent_side"] == 8 and results["ss_encoder"]["occupied"] > 0
    assert report["smoke"] is True and report["precision"] == "fp32"


def test_bench_train_gpu_mode_smoke_reports_both_stages(tmp_path, script):
    out = tmp_path / "train.json"
    script("bench_train", "--gpu", "--smoke", "--device", "cpu", "--batch", "1", "--repeat", "1", "--warmup", "0",
           "--json", out)
    report = json.loads(out.read_text())
    assert report["mode"] == "gpu" and report["smoke"] is True
    for stage in ("ss", "shape_1024"):
        result = report["results"][stage]
        assert result["step_seconds"] > 0 and result["trainable_params"] > 0
        hours = 50_000 * result["step_seconds"] / 3600  # batch 1
        assert abs(result["gpu_hours_per_epoch_50k"] - hours) <= 0.01 + 1e-4 * hours


def test_bench_ovoxel_and_bench_render_smoke(tmp_path, script):
    out = tmp_path / "ovoxel.json"
    script("bench_ovoxel", "--faces", "2000", "--texture-size", "32", "--resolution", "32", "--json", out)
    (result,) = json.loads(out.read_text())["results"]
    assert result["resolution"] == 32 and result["voxels"] > 100 and result["faces"] >= 1900
    out = tmp_path / "render.json"
    script("bench_render", "--faces", "2000", "--texture-size", "32", "--size", "32", "--frames", "2", "--json", out)
    report = json.loads(out.read_text())
    assert report["faces"] >= 1900 and report["results"]["turntable_2_s"] > 0 and report["opengl"]


def test_bench_data_build_smoke_in_both_modes(tmp_path, tiny_root, script):
    out = tmp_path / "cpu.json"
    script("bench_data_build", "--smoke", "--tiny-root", tiny_root, "--json", out)
    report = json.loads(out.read_text())
    steps = report["step_seconds"]
    assert set(steps) == {"asset", "ovoxel", "encoders", "render", "dinov3", "mllm", "editor"}
    assert steps["ovoxel"] > 0 and steps["encoders"] > 0 and steps["editor"] > 0
    assert report["dominant"] == max(steps, key=steps.get) and abs(sum(report["step_share"].values()) - 1) < 0.01
    assert report["voxels"] > report["shape_tokens"] > 0 and report["mode"] == "cpu"
    out = tmp_path / "gpu.json"
    script("bench_data_build", "--gpu", "--smoke", "--device", "cpu", "--json", out)
    report = json.loads(out.read_text())
    results = report["results"]
    assert results["hdit_per_variant"]["forwards"] == 21  # default tap: step 10 of 40 with true CFG, preview=none
    assert results["hdit_per_variant"]["seconds"] == results["editor_forward"]["seconds"] * 21
    assert results["shape_encoder_512"]["voxels"] > results["shape_encoder_512"]["latent_tokens"] > 0
    parts = sum(results[f"{k}_encoder_512"]["seconds"] for k in ("shape", "tex", "ss")) + \
        results["dinov3_512"]["seconds"] + results["dinov3_1024"]["seconds"] + 2 * results["hdit_per_variant"]["seconds"]
    assert report["per_asset_seconds"]["512"] == parts > 0


def test_bench_preview_smoke(tmp_path, script):
    out = tmp_path / "preview.json"
    script("bench_preview", "--export-faces-in", "6000", "--resolution", "128", "--faces", "3000", "--texture-size",
           "32", "--size", "32", "--frames", "2", "--preview-faces", "1000", "--threads", "1", "--json", out)
    results = json.loads(out.read_text())["results"]
    assert results["export_glb"]["faces"] == results["preview_png_full_mesh"]["rendered_faces"] == 3000
    assert results["preview_png"]["rendered_faces"] < 3000 and results["turntable_webp_2"]["kilobytes"] > 0


def test_bench_ray_smoke_measures_the_local_engine(tmp_path, tiny_root, script):
    out = tmp_path / "ray.json"
    script("bench_ray", "--smoke", "--engines", "local", "--tiny-root", tiny_root, "--json", out)
    (result,) = json.loads(out.read_text())["results"]
    assert result["engine"] == "local" and result["ok"] == result["items"] == 3
    assert result["items_per_s"] > 0 and 0 < result["chain_s"] < result["wall_s"]
