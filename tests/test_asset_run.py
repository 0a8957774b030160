"""`AssetRun`: the asset folder's files and metadata.json, each section read from one stage's result."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from know3d_cli import metadata
from know3d_cli.asset_run import AssetJob, AssetRun, RunContext, StageTimings
from know3d_cli.config import Mode, Preview, load_config, to_container
from know3d_cli.editor import EditorTap
from know3d_cli.export import EncodedMesh, Placement, Previews
from know3d_cli.geometry import Asset3D
from know3d_cli.hub import ResolvedModel
from know3d_cli.mllm import BackViewExpansion, build_back_prompt
from know3d_cli.preprocess import PreparedImage
from know3d_cli.run_plan import RunPlan
from know3d_cli.runtime import resolve_runtime
from know3d_cli.trellis2 import PipelineType, Trellis2Output

METADATA_FIELDS = {
    "schema_version", "id", "key", "input", "back", "prompt", "mode", "preview", "seed", "seed_requested", "models",
    "adapter", "tap", "forwards", "trellis2", "export", "geometry", "timings_s", "peak_memory", "device", "dtype",
    "versions", "warnings", "files", "config", "run",
}
ENVIRONMENT = metadata.RunEnvironment("2026-11-30T00:27:50+00:00", ["know3d", "generate", "in/mug.png"], "render-7",
                                      {"name": "NVIDIA H200", "driver": "570.86.15"})
JOB = AssetJob(image=Path("in/mug.png"), id="mug", back="a zipper pocket", seed=None)


def context(mode: Mode, preview: Preview = Preview.x0, warnings=()) -> RunContext:
    cfg = load_config(["preset=tiny", "models.tiny_root=/tiny", f"preview={preview}", "runtime.device=cpu"])
    models = {"editor": ResolvedModel("editor", "tiny/editor", Path("/tiny/editor"), None)}
    plan = RunPlan(mode, Path("/adapter") if mode is Mode.know3d else None, tuple(warnings))
    return RunContext(cfg, to_container(cfg), plan, models, resolve_runtime(cfg.runtime))


def asset_run(tap: bool = True, back_image: bool = True, expansion: str | None = None) -> AssetRun:
    image = Image.new("RGB", (8, 8))
    prepared = PreparedImage(JOB.image, "ab" * 32, image, image.convert("RGBA"), "threshold", (96, 80), (96, 80),
                             (0, 0, 96, 96), warnings=("first frame used",))
    editor_tap = EditorTap(torch.zeros(1, 2, 3, 48), 1, 750.0, 0.75, (2, 3), 6,
                           Image.new("RGB", (4, 4)) if back_image else None) if tap else None
    generated = Trellis2Output(
        Asset3D(torch.zeros(5, 3), torch.zeros(7, 3, dtype=torch.int64), "shape", 256), PipelineType("1024_cascade"),
        256, {"ss": 22, "shape_lr": 21, "shape_hr": 21, "tex": 12}, {"ss": 4096, "voxels": 900},
        ("token cap lowered the resolution",))
    described = BackViewExpansion(expansion, "raw", (), ("unparsable answer",)) if expansion is not None else None
    return AssetRun(JOB, 1234, ENVIRONMENT, prepared, described, build_back_prompt(JOB.back, expansion), editor_tap, generated,
                    EncodedMesh({"model.glb": b"glTF"}, "model.glb", Placement(1.0, (0.0, 0.0, 0.0)),
                                [[0.0] * 3, [1.0] * 3], 4, 6), Previews({}, [], {}),
                    StageTimings({"preprocess": 0.5}, {"ss": 0.123456}, {"encode": 0.1}))


@pytest.mark.parametrize("mode, preview, tap, back_image, used", [
    (Mode.know3d, Preview.x0, True, True, Preview.x0),
    (Mode.know3d, Preview.full, True, True, Preview.full),
    (Mode.multiview, Preview.x0, True, True, Preview.full),  # multiview finishes the edit it conditions on
    (Mode.know3d, Preview.none, True, False, Preview.none),
    (Mode.trellis, Preview.x0, False, False, Preview.none),
])
def test_back_png_is_written_when_there_is_a_preview_and_says_what_it_shows(mode, preview, tap, back_image, used):
    run, ctx = asset_run(tap, back_image), context(mode, preview)
    assert run.back_preview(ctx) is used
    files = run.files(ctx)
    assert sorted(files) == (["back.png"] if used is not Preview.none else []) + ["input.png", "model.glb"]
    assert Image.open(io.BytesIO(files["input.png"])).mode == "RGBA"
    meta = run.metadata(ctx, sorted(files))
    assert meta["preview"] == {"requested": preview, "used": used}
    assert meta["files"] == [*sorted(files), metadata.METADATA_FILE]


def test_every_metadata_section_comes_from_its_stage_result():
    run, ctx = asset_run(expansion="a zipped pocket on the back"), context(Mode.know3d, warnings=["auto fell back"])
    meta = json.loads(metadata.to_json_bytes(run.metadata(ctx, ["input.png", "model.glb"])))
    assert set(meta) >= METADATA_FIELDS and meta["schema_version"] == metadata.SCHEMA_VERSION
    assert meta["versions"]["torch"] == torch.__version__.split("+")[0]
    assert meta["id"] == "mug" and meta["back"] == "a zipper pocket"
    assert meta["seed"] == 1234 and meta["seed_requested"] is None
    assert meta["key"] == metadata.run_key("ab" * 32, "a zipper pocket", None, ctx.config) == ctx.key(JOB, "ab" * 32)
    assert meta["input"] == {"path": "in/mug.png", "absolute_path": str(Path("in/mug.png").resolve()),
                             "sha256": "ab" * 32, "mask_source": "threshold", "mask_warnings": [],
                             "original_size": [96, 80]}
    assert meta["run"] == {"started_at": "2026-11-30T00:27:50+00:00", "command_line": ["know3d", "generate",
                           "in/mug.png"], "host": "render-7", "gpu": {"name": "NVIDIA H200", "driver": "570.86.15"}}
    assert meta["prompt"]["expanded"] == "a zipped pocket on the back"
    assert meta["prompt"]["editor"].endswith("a zipped pocket on the back")  # the expansion replaces the hint
    assert meta["mode"] == {"requested": "auto", "used": "know3d"} and meta["adapter"] == "/adapter"
    assert meta["models"] == {"editor": {"repo": "tiny/editor", "revision": None, "path": "/tiny/editor"}}
    assert meta["tap"] == {"block": ctx.cfg.tap.block, "step_frac": ctx.cfg.tap.step_frac, "step_index": 1,
                           "timestep": 750.0, "sigma": 0.75, "grid": [2, 3], "tokens": str(ctx.cfg.tap.tokens),
                           "shape": [1, 2, 3, 48]}
    assert meta["forwards"] == {"editor": 6, "trellis2": 76,
                                "trellis2_per_run": {"ss": 22, "shape_lr": 21, "shape_hr": 21, "tex": 12}}
    assert meta["trellis2"] == {"pipeline_type": "1024_cascade", "resolution": 256,
                                "tokens": {"ss": 4096, "voxels": 900}, "timings_s": {"ss": 0.1235}}
    assert meta["geometry"] == {"source_stage": "shape", "resolution": 256, "vertices": 4, "faces": 6,
                                "textured": False, "generated": {"vertices": 5, "faces": 7}}
    assert meta["export"] == {"format": "glb", "timings_s": {"encode": 0.1}, "model_file": "model.glb",
                              "placement": {"scale": 1.0, "translation": [0.0, 0.0, 0.0]},
                              "bounds": [[0.0] * 3, [1.0] * 3], "textures": {}, "preview": {}}
    assert meta["timings_s"] == {"preprocess": 0.5}
    assert meta["warnings"] == ["auto fell back", "first frame used", "unparsable answer",
                                "token cap lowered the resolution"]  # in chain order
    assert meta["device"] == "cpu" and meta["dtype"] == "float32" and meta["peak_memory"]["kind"] == "peak_rss"
    # the resolved config as run: its back text and seed are the job's (the drawn seed), not the config defaults
    assert meta["config"] == {**json.loads(json.dumps(ctx.config)), "back": "a zipper pocket", "seed": 1234}


def test_without_the_editor_there_is_no_prompt_tap_or_editor_forward():
    meta = asset_run(tap=False).metadata(context(Mode.trellis), ["input.png", "model.glb"])
    assert meta["prompt"] == {"editor": None, "expanded": None}
    assert meta["tap"] is None and meta["forwards"]["editor"] == 0
    assert meta["adapter"] is None and meta["mode"]["used"] is Mode.trellis


def test_the_run_environment_names_the_gpu_and_its_driver_asked_once(monkeypatch):
    from know3d_cli import machine

    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"NVIDIA H200 #{index}")
    monkeypatch.setattr(machine, "gpus", lambda: asked.append(1) or [
        machine.GpuInfo(0, "NVIDIA H200", "570.86.15", "9.0", 140.4, 136.7),
        machine.GpuInfo(1, "NVIDIA H200", "570.86.15", "9.0", 140.4, 136.7)])
    metadata._gpu.cache_clear()
    try:
        first, again = (metadata.RunEnvironment.capture("cuda:1") for _ in range(2))
    finally:
        metadata._gpu.cache_clear()
    assert first.gpu == again.gpu == {"name": "NVIDIA H200 #1", "driver": "570.86.15"} and asked == [1]
    cpu = metadata.RunEnvironment.capture("cpu")
    assert cpu.gpu is None and cpu.command_line == sys.argv and cpu.started_at.endswith("+00:00")
