"""`know3d data build` / `inspect` end to end on three procedural textured assets with the tiny models."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from know3d_cli.cli import main
from know3d_cli.data.schema import (
    CONDITION_TENSORS,
    CONDITIONS_FILE,
    DATASET_FILE,
    DATASET_KEYS,
    LATENT_TENSORS,
    LATENTS_FILE,
    SAMPLE_FILE,
)
from know3d_cli.mllm import P_VIEW
from know3d_cli.tiny.dataset import TINY_EDITOR_GRID, dino_tokens
from know3d_cli.tiny.editor import TINY_EDITOR_HIDDEN

from ..train.conftest import train_overrides
from .conftest import build_assets

pytestmark = pytest.mark.usefixtures("one_thread")

K = 2


def build_args(tiny_root: Path, *extra: str) -> list[str]:
    """A small CPU build: tiny models, shape latents at 512, 96-pixel renders, K = 2, DINOv3 at 512 only."""
    return ["preset=tiny", f"models.tiny_root={tiny_root}", "runtime.device=cpu", "data.ovoxel.resolution=512",
            "data.views.size=96", f"data.prompts.variants={K}", "data.dino_resolutions=[512]", *extra]


def cli(*argv) -> tuple[int, list[dict], str]:
    """Run the CLI in-process (module fixtures cannot use capsys): exit code, stdout JSON lines, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A CSV: the rod and the hook with captions, the ring without (Qwen2.5-VL describes it), a corrupt GLB."""
    folder = tmp_path_factory.mktemp("assets")
    build_assets(folder)
    (folder / "corrupt.glb").write_bytes(b"glTF\x02\x00\x00\x00 this is not a binary glTF")
    manifest = folder / "assets.csv"
    manifest.write_text("asset,id,caption\n"
                        "rod.glb,,a red stripe; a flat end\n"
                        "ring.obj,,\n"
                        "hook.glb,hook,an arm sticking out\n"
                        "corrupt.glb,,\n")
    return manifest


@pytest.fixture(scope="module")
def built(tiny_root, assets, tmp_path_factory):
    """The unsharded build: (dataset folder, exit code, stdout events)."""
    out = tmp_path_factory.mktemp("built") / "dataset"
    code, events, _ = cli("data", "build", assets, "--out", out, *build_args(tiny_root))
    return out, code, events


def test_build_writes_every_sample_and_fails_the_corrupt_asset_alone(built):
    out, code, events = built
    assert code == 1  # one asset failed
    by_id = {e["id"]: e for e in events if e["event"] == "asset"}
    assert {i: e["status"] for i, e in by_id.items()} == {"rod": "ok", "ring": "ok", "hook": "ok", "corrupt": "failed"}
    assert by_id["corrupt"]["reason"] == "unreadable" and by_id["corrupt"]["code"] == "bad_asset"
    assert "corrupt.glb" in by_id["corrupt"]["error"] and "\n" not in by_id["corrupt"]["error"]
    assert events[-1] == {**events[-1], "event": "summary", "total": 4, "ok": 3, "failed": 1, "skipped": 0,
                          "interrupted": False, "shard": "0/1"}
    failures = [json.loads(line) for line in Path(events[-1]["failures"]).read_text().splitlines()]
    assert [(f["id"], f["reason"]) for f in failures] == [("corrupt", "unreadable")]
    assert not (out / "samples" / "corrupt").exists()


def test_every_tensor_follows_the_schema(built):
    out, _, _ = built
    info = json.loads((out / DATASET_FILE).read_text())
    assert set(DATASET_KEYS) <= set(info) and info["shape_resolution"] == 512 and info["variants"] == K
    assert set(info["models"]) == {"trellis2_encoders", "ss_encoder", "dinov3", "mllm", "editor"}
    index = [json.loads(line) for f in sorted((out / "index").glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert sorted(line["id"] for line in index) == ["hook", "ring", "rod"]
    for line in index:
        folder = out / line["dir"]
        assert {p.name for p in folder.iterdir()} == {SAMPLE_FILE, LATENTS_FILE, CONDITIONS_FILE, "front.png",
                                                       "back.png"}
        sizes: dict[str, int] = {"K": K}
        tensors = {}
        for file, specs in ((LATENTS_FILE, LATENT_TENSORS), (CONDITIONS_FILE, CONDITION_TENSORS)):
            with safe_open(str(folder / file), framework="pt") as f:
                assert set(f.keys()) == {s.name for s in specs if s.name != "dino_1024"}
                for spec in specs:
                    if spec.name in f.keys():
                        tensors[spec.name] = f.get_tensor(spec.name)
                        assert spec.problem(tensors[spec.name], sizes) is None
        assert tensors["hdit"].shape == (K, *TINY_EDITOR_GRID, TINY_EDITOR_HIDDEN)
        assert tensors["dino_512"].shape[0] == dino_tokens(512) and torch.isfinite(tensors["dino_512"]).all()
        occupancy, coords = tensors["occupancy"].long(), tensors["shape_coords"].long()
        assert 0 <= occupancy.min() and occupancy.max() < 64 and coords.max() < 32  # 512 / 16
        # both come from the same O-Voxel: the 32^3 shape latent cells are the 64^3 occupancy pooled by 2
        assert torch.equal(torch.unique(occupancy // 2, dim=0), coords)
        assert torch.equal(coords, torch.unique(coords, dim=0))  # lexicographic, no repeats
        for name in ("ss_latent", "shape_feats", "tex_feats"):
            assert torch.isfinite(tensors[name]).all() and tensors[name].std() > 0
        record = json.loads((folder / SAMPLE_FILE).read_text())
        assert record["prompts"] == line["prompts"] and len(line["prompts"]) == K
        assert all(p.startswith(P_VIEW) for p in line["prompts"])
        assert record["counts"] == {"N": len(coords), "M": len(occupancy), "K": K}
        for view in ("front.png", "back.png"):
            with Image.open(folder / view) as image:
                assert image.mode == "RGBA" and image.width == image.height
                assert np.asarray(image)[..., 3].max() == 255  # the object is in the picture


def test_captions_become_the_prompt_variants(built):
    out, _, _ = built
    rod = json.loads((out / "samples" / "rod" / SAMPLE_FILE).read_text())
    assert rod["caption"]["source"] == "caption"
    assert rod["prompts"][0] == f"{P_VIEW} a red stripe. a flat end."  # variant 0 names every part, in order
    ring = json.loads((out / "samples" / "ring" / SAMPLE_FILE).read_text())
    assert ring["caption"]["source"] == "mllm" and ring["caption"]["raw"]  # the tiny Qwen2.5-VL answered
    assert ring["tap"]["block"] == 1 and ring["tap"]["grid"] == list(TINY_EDITOR_GRID)


def test_resume_skips_finished_samples(built, tiny_root, assets):
    out, _, _ = built
    before = {p: p.stat().st_mtime_ns for p in (out / "samples").rglob("*")}
    code, events, _ = cli("data", "build", assets, "--out", out, *build_args(tiny_root))
    assert code == 1
    statuses = {e["id"]: e["status"] for e in events if e["event"] == "asset"}
    assert statuses == {"rod": "skipped", "ring": "skipped", "hook": "skipped", "corrupt": "failed"}
    assert {p: p.stat().st_mtime_ns for p in (out / "samples").rglob("*")} == before
    index = [line for f in (out / "index").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(index) == 3


def test_two_shards_build_the_unsharded_set(built, tiny_root, assets, tmp_path):
    out, _, _ = built
    sharded = tmp_path / "sharded"
    owned = []
    for part in ("0/2", "1/2"):
        code, events, _ = cli("data", "build", assets, "--out", sharded, "--shard", part, *build_args(tiny_root))
        assert events[-1]["shard"] == part
        owned.append({e["id"] for e in events if e["event"] == "asset"})
    assert not owned[0] & owned[1] and owned[0] | owned[1] == {"rod", "ring", "hook", "corrupt"}
    assert len(list((sharded / "index").glob("*.jsonl"))) == 2
    lines = sorted((json.loads(line) for f in (sharded / "index").glob("*.jsonl")
                    for line in f.read_text().splitlines()), key=lambda r: r["id"])
    reference = sorted((json.loads(line) for f in (out / "index").glob("*.jsonl")
                        for line in f.read_text().splitlines()), key=lambda r: r["id"])
    strip = ("source",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in lines] == \
        [{k: v for k, v in r.items() if k not in strip} for r in reference]
    for line in reference:
        for file in (LATENTS_FILE, CONDITIONS_FILE):
            with safe_open(str(out / line["dir"] / file), "pt") as a, safe_open(str(sharded / line["dir"] / file),
                                                                              "pt") as b:
                assert set(a.keys()) == set(b.keys())
                for key in a.keys():
                    assert torch.equal(a.get_tensor(key), b.get_tensor(key)), (line["id"], key)


def test_every_training_command_runs_on_the_built_dataset(built, tiny_root, tmp_path):
    out, _, _ = built
    for stage, steps in (("ss", 2), ("shape_512", 1)):  # the adapter on hdit; the shape latents at 512
        code, events, err = cli("train", *train_overrides(tiny_root, out, tmp_path / stage, f"train={stage}",
                                                           f"train.steps={steps}"))
        assert code == 0, err
        logged = [e for e in events if e.get("event") == "train"]
        assert [e["step"] for e in logged] == list(range(1, steps + 1)) and all(np.isfinite(e["loss"]) for e in logged)
    code, events, err = cli("train", "editor-lora", "preset=tiny", f"models.tiny_root={tiny_root}", "runtime.device=cpu",
                            f"train.dataset={out}", f"train.editor_lora.output={tmp_path / 'lora'}",
                            "train.editor_lora.steps=1", "train.log_every=1")
    assert code == 0, err
    assert events[-1]["event"] == "editor_lora_done" and Path(events[-1]["file"]).is_file()


def test_retap_recomputes_only_hdit_and_reproduces_the_build(built, tiny_root, tmp_path):
    from know3d_cli.config import load_config
    from know3d_cli.data.retap import retap_dataset
    from know3d_cli.errors import ConfigError, InputError

    out, _, _ = built
    same = retap_dataset(out, tmp_path / "same", load_config(build_args(tiny_root)))
    assert (same.total, same.retapped, same.skipped) == (3, 3, 0)
    moved = tmp_path / "moved"
    retap_dataset(out, moved, load_config(build_args(tiny_root, "tap.step_frac=0.5")))
    info = json.loads((moved / DATASET_FILE).read_text())
    assert info["settings"]["tap"]["step_frac"] == 0.5 and info["built_by"]["retapped_from"] == str(out)
    source_info = json.loads((out / DATASET_FILE).read_text())
    assert {k: v for k, v in info["settings"].items() if k != "tap"} == \
        {k: v for k, v in source_info["settings"].items() if k != "tap"}
    for sample in ("rod", "ring", "hook"):
        original = {f: _tensors(out / "samples" / sample / f) for f in (LATENTS_FILE, CONDITIONS_FILE)}
        # the build's own editor settings give back its H_DiT bit for bit: same front view, prompts and seeds
        assert _tensors(tmp_path / "same" / "samples" / sample / CONDITIONS_FILE).keys() == \
            original[CONDITIONS_FILE].keys()
        for key, value in _tensors(tmp_path / "same" / "samples" / sample / CONDITIONS_FILE).items():
            assert torch.equal(value, original[CONDITIONS_FILE][key]), (sample, key)
        # another tap step changes H_DiT and nothing else
        conditions = _tensors(moved / "samples" / sample / CONDITIONS_FILE)
        assert not torch.equal(conditions["hdit"], original[CONDITIONS_FILE]["hdit"])
        assert torch.equal(conditions["dino_512"], original[CONDITIONS_FILE]["dino_512"])
        for key, value in _tensors(moved / "samples" / sample / LATENTS_FILE).items():
            assert torch.equal(value, original[LATENTS_FILE][key]), (sample, key)
        record = json.loads((moved / "samples" / sample / SAMPLE_FILE).read_text())
        before = json.loads((out / "samples" / sample / SAMPLE_FILE).read_text())
        assert record["tap"]["step_frac"] == 0.5 and record["prompts"] == before["prompts"]
        assert record["variants"] == before["variants"] and record["camera"] == before["camera"]
        assert (moved / "samples" / sample / "front.png").read_bytes() == (out / "samples" / sample /
                                                                           "front.png").read_bytes()
    assert retap_dataset(out, moved, load_config(build_args(tiny_root, "tap.step_frac=0.5"))).skipped == 3
    with pytest.raises(ConfigError, match="other settings"):
        retap_dataset(out, moved, load_config(build_args(tiny_root)))
    with pytest.raises(InputError, match="not a dataset folder"):
        retap_dataset(tmp_path / "nothing", tmp_path / "x", load_config(build_args(tiny_root)))
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "samples" / "hook" / CONDITIONS_FILE).unlink()
    with pytest.raises(InputError, match="not a complete sample"):
        retap_dataset(broken, tmp_path / "y", load_config(build_args(tiny_root)))


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


def test_inspect_reports_counts_failures_and_a_contact_sheet(built, tmp_path):
    out, _, _ = built
    sheet = tmp_path / "sheet.png"
    code, events, _ = cli("data", "inspect", out, "--sheet", sheet)
    assert code == 0
    (report,) = events
    assert report["samples"] == 3 and report["failed"] == 1 and report["failure_reasons"] == {"unreadable": 1}
    assert report["unindexed"] == report["indexed_missing"] == report["in_progress"] == 0
    assert report["counts"]["K"] == {"min": K, "mean": float(K), "max": K}
    assert report["bytes"]["total"] > 0 and report["prompts"]["total"] == 3 * K
    assert report["sheet"] == str(sheet) and report["sheet_samples"] == ["hook", "ring", "rod"]
    with Image.open(sheet) as image:
        pixels = np.asarray(image.convert("RGB"))
    third = pixels.shape[1] // 3
    for column in range(3):  # every column shows something on every row (not blank white / black)
        cells = np.array_split(pixels[12:, column * third:(column + 1) * third], 3, axis=0)
        for cell in cells:
            assert np.unique(cell.reshape(-1, 3), axis=0).shape[0] > 4


def _garbage_dataset(path: Path) -> Path:
    path.mkdir()
    (path / DATASET_FILE).write_text("{ not json")
    return path


def test_bad_invocations_are_one_line_errors(built, tiny_root, assets, tmp_path):
    out, _, _ = built
    cases = [
        (["data", "build", assets, "--out", tmp_path / "a", "--shard", "2/2", *build_args(tiny_root)], 2, "--shard"),
        (["data", "build", assets, "--out", tmp_path / "b", *build_args(tiny_root, "data.ovoxel.resolution=256")], 2,
         "data.ovoxel.resolution"),
        (["data", "build", tmp_path / "nothing", "--out", tmp_path / "c", *build_args(tiny_root)], 3, "not found"),
        (["data", "build", assets, "--out", tmp_path / "d",
          *build_args(tiny_root, "models.trellis2_encoders.path=null")], 3, "know3d models pull trellis2_encoders"),
        (["data", "build", assets, "--out", out, *build_args(tiny_root, "data.prompts.variants=3")], 2,
         "other settings"),
        (["data", "inspect", tmp_path], 3, "not a Know3D dataset"),
        (["data", "inspect", _garbage_dataset(tmp_path / "garbage")], 3, "unreadable"),
    ]
    for argv, want, text in cases:
        code, events, err = cli(*argv)
        assert code == want, (argv, err)
        assert events == [] and text in err and err.count("\n") == 1, err


def test_a_later_phase_fails_one_asset_and_ctrl_c_ends_with_the_summary(tiny_root, tmp_path, monkeypatch):
    from know3d_cli.data import build
    from know3d_cli.errors import GenerationError

    build_assets(tmp_path / "assets")
    for path in (tmp_path / "assets").glob("*"):  # keep the hook and the rod (in this order)
        if path.name.startswith(("ring", "material")):
            path.unlink()
    calls = []

    def editor(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise GenerationError("the editor never reached tap step 2 of 8")
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "tapped_states", editor)
    out = tmp_path / "dataset"
    code, events, err = cli("data", "build", tmp_path / "assets", "--out", out, *build_args(tiny_root))
    assert code == 130
    assert [(e["id"], e["status"], e.get("code")) for e in events[:-1]] == [("hook", "failed", "generation_failure")]
    assert events[-1]["event"] == "summary" and events[-1]["interrupted"] is True and events[-1]["failed"] == 1
    assert not list((out / "samples").iterdir())  # nothing half-written
    assert "resume" in err



def test_a_full_disk_stops_the_build_with_exit_4_and_keeps_finished_samples(tiny_root, tmp_path, monkeypatch,
                                                                             disk_full):
    from know3d_cli.config import load_config
    from know3d_cli.data import build
    from know3d_cli.data.sources import read_sources
    from know3d_cli.shard import ALL

    from .test_writer import make_sample

    for phase in ("_geometry", "_dino", "_text", "_editor"):  # only the writes matter here
        monkeypatch.setattr(build.DatasetBuilder, phase, lambda self, job: None)
    monkeypatch.setattr(build.DatasetBuilder, "_model", lambda self, name: None)
    monkeypatch.setattr(build.DatasetBuilder, "_write", lambda self, job: self.writer.write(make_sample(job.id)))
    sources = read_sources(str(build_assets(tmp_path / "assets")["rod"].parent))
    builder = build.DatasetBuilder(load_config(build_args(tiny_root, "data.group_size=1")), tmp_path / "out", ALL)
    events = []
    first = builder.run(sources[:1], events.append)
    disk_full(monkeypatch, tmp_path / "out" / "samples")
    summary = builder.run(sources, events.append)
    assert (first.ok, summary.exit_code, summary.skipped, summary.ok) == (1, 4, 1, 0)
    assert "no space left" in summary.stopped.lower() and summary.failed == 0
    assert [e["status"] for e in events] == ["ok", "skipped"]  # the build stopped at the first sample it could not write
    assert [p.name for p in (tmp_path / "out" / "samples").iterdir()] == [sources[0].id]
