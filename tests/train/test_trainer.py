"""`know3d train` end to end on the tiny models: overfitting, exact resume, metrics, previews, export, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from know3d_cli.config import load_config
from know3d_cli.errors import EXIT_MISSING, EXIT_OK, EXIT_USAGE
from know3d_cli.train import run_training
from know3d_cli.train.batch import collate, draw_inputs
from know3d_cli.train.trainer import Trainer

from .conftest import train_overrides

SHAPE = ["train=shape_512"]


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ------------------------------------------------------------------------------------------------ overfitting
@pytest.mark.parametrize("trainable,extra,steps,fraction", [
    ("flow", [], 40, 0.4),
    ("adapter", ["train.adapter.proj_channels=64"], 40, 0.9),
])
def test_a_fixed_two_sample_batch_is_overfitted(trainable, extra, steps, fraction, tiny_root, train_data, tmp_path,
                                                one_thread):
    """Repeating one step's inputs (same samples, t and noise): the loss falls below `fraction` of its start."""
    cfg = load_config(train_overrides(tiny_root, train_data, tmp_path, *SHAPE, f"train.trainable={trainable}",
                                      "train.optimizer.lr=1e-2", "train.ema.rate=0",
                                      "train.gradient_checkpointing=false", *extra))
    trainer = Trainer(cfg, lambda record: None)
    batch = collate([trainer.dataset.load(i, slot=i) for i in range(2)])
    inputs = draw_inputs(batch, 0, 0, trainer.objective, 0.0, 0.0, trainer.device)
    losses = [trainer.optimize([inputs], 1e-2)[0] for _ in range(steps)]
    assert losses[-1] < fraction * losses[0], losses[::10]


# ------------------------------------------------------------------------------------------------ resume
@pytest.fixture(scope="module")
def resumed_runs(tiny_root, train_data, tmp_path_factory):
    """Run A: 4 steps. Run B: 2 steps, then `--resume latest` to 4. Warm-up, adaptive clipping and EMA all move."""
    root = tmp_path_factory.mktemp("resume")
    extra = [*SHAPE, "train.checkpoint_every=2", "train.optimizer.lr=1e-3", "train.lr_schedule.warmup_steps=3",
             "train.grad_clip.window=2", "train.ema.rate=0.9"]
    torch.set_num_threads(1)
    run_training(load_config(train_overrides(tiny_root, train_data, root / "a", "train.steps=4", *extra)))
    run_training(load_config(train_overrides(tiny_root, train_data, root / "b", "train.steps=2", *extra)))
    return root, extra


def test_n_steps_then_resume_then_n_steps_equals_2n_steps_bit_for_bit(resumed_runs, run_cli, tiny_root, train_data):
    root, extra = resumed_runs
    res = run_cli("train", *train_overrides(tiny_root, train_data, root / "b", "train.steps=4", *extra),
                  "--resume", "latest", "--quiet")
    assert res.code == EXIT_OK, res.stderr
    assert [e["event"] for e in res.events][0] == "train_start" and res.events[0]["step"] == 2
    for name in ("trainable", "ema", "optimizer"):
        a = load_file(root / "a" / "checkpoints" / "step-0000004" / f"{name}.safetensors")
        b = load_file(root / "b" / "checkpoints" / "step-0000004" / f"{name}.safetensors")
        assert a.keys() == b.keys() and a
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}:{key}"
    state_a = json.loads((root / "a" / "checkpoints" / "step-0000004" / "state.json").read_text())
    state_b = json.loads((root / "b" / "checkpoints" / "step-0000004" / "state.json").read_text())
    assert state_a["clip"] == state_b["clip"] and state_a["ema_updates"] == state_b["ema_updates"] == 4

    def train_lines(run: Path) -> list[tuple]:
        lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in lines if r["event"] == "train"]

    assert train_lines(root / "a") == train_lines(root / "b")  # the resumed run rewrote its log past step 2


def test_a_corrupt_checkpoint_is_exit_3_with_one_line(resumed_runs, run_cli, tiny_root, train_data, tmp_path):
    root, extra = resumed_runs
    run = tmp_path / "run"
    shutil.copytree(root / "a", run)
    step = run / "checkpoints" / "step-0000004"
    weights = step / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    args = train_overrides(tiny_root, train_data, run, "train.steps=6", *extra)
    res = run_cli("train", *args, "--resume", "latest", "--quiet")
    assert res.code == EXIT_MISSING and "damaged" in error_line(res.stderr) and res.stdout == ""
    res = run_cli("train", "export", step, "--out", tmp_path / "out", "--quiet")
    assert res.code == EXIT_MISSING and "trainable.safetensors" in error_line(res.stderr)
    (step / "state.json").write_text("{")
    res = run_cli("train", "export", step, "--out", tmp_path / "out", "--quiet")
    assert res.code == EXIT_MISSING and "state.json" in error_line(res.stderr)
    assert not (tmp_path / "out" / "shape.json").exists()
    res = run_cli("train", "export", tmp_path / "nowhere", "--out", tmp_path / "out", "--quiet")
    assert res.code == EXIT_MISSING and "not found" in error_line(res.stderr)


def test_a_checkpoint_naming_an_unknown_adapter_file_is_exit_3(resumed_runs, run_cli, tmp_path):
    root, _ = resumed_runs
    step = tmp_path / "step"
    shutil.copytree(root / "a" / "checkpoints" / "step-0000004", step)
    meta = json.loads((step / "state.json").read_text())
    meta["identity"]["adapter_file"] = "body"
    (step / "state.json").write_text(json.dumps(meta))
    res = run_cli("train", "export", step, "--out", tmp_path / "out", "--quiet")
    assert res.code == EXIT_MISSING and "unknown adapter file 'body'" in error_line(res.stderr)
    assert not any((tmp_path / "out").glob("*.json"))


def test_a_checkpoint_of_another_run_is_exit_3(resumed_runs, run_cli, tiny_root, train_data, tmp_path):
    root, extra = resumed_runs
    run = tmp_path / "run"
    shutil.copytree(root / "a", run)
    # a half-written checkpoint folder (killed while saving) is never picked as the latest
    (run / "checkpoints" / ".step-0000006.tmp-1").mkdir()
    args = train_overrides(tiny_root, train_data, run, "train.steps=6", *extra, "train.adapter.proj_channels=16")
    res = run_cli("train", *args, "--resume", "latest", "--quiet")
    assert res.code == EXIT_MISSING
    line = error_line(res.stderr)
    assert "step-0000004" in line and "adapter differs" in line


# ------------------------------------------------------------------------------------------------ SS runs
@pytest.fixture(scope="module")
def ss_runs(tiny_root, train_data, tmp_path_factory):
    """One SS adapter step trained (lr 1e-2, with a preview and TensorBoard) and one untrained (lr 0)."""
    root = tmp_path_factory.mktemp("ss")
    torch.set_num_threads(1)
    records: list[dict] = []
    common = ["train.steps=1", "train.p_uncond=0", "train.p_uncond_editor=0"]
    run_training(load_config(train_overrides(
        tiny_root, train_data, root / "trained", *common, "train.optimizer.lr=1e-2", "train.ema.rate=0",
        "train.validation.every=1", "train.validation.samples=1", "train.validation.steps=1",
        "train.tensorboard=true")), emit=records.append)
    run_training(load_config(train_overrides(tiny_root, train_data, root / "untrained", *common,
                                             "train.optimizer.lr=0")))
    return root, records


def test_metrics_previews_and_tensorboard(ss_runs):
    root, records = ss_runs
    run = root / "trained"
    assert [r["event"] for r in records] == ["train_start", "train", "checkpoint", "validation", "train_done"]
    train = records[1]
    assert {"loss", "loss_t_bins", "lr", "grad_norm", "samples_per_s", "step"} <= set(train)
    assert train["loss"] > 0 and train["samples_per_s"] > 0 and train["lr"] == 1e-2
    assert sum(1 for _ in train["loss_t_bins"]) >= 1
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == json.loads(json.dumps(records))
    preview = records[3]
    assert Path(preview["file"]) == run / "validation" / "step-0000001.png" and Path(preview["file"]).is_file()
    assert 0.0 <= preview["occupancy_iou"] <= 1.0
    from PIL import Image

    assert Image.open(preview["file"]).size[0] > 4 * 128
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))


def test_the_exported_adapter_changes_generation_and_an_untrained_one_does_not(ss_runs, run_cli, tiny_root,
                                                                               tmp_path):
    import trimesh

    from know3d_cli.demo import demo_image
    from know3d_cli.trellis2 import AdapterStage
    from know3d_cli.trellis2.checkpoint import load_adapter

    root, _ = ss_runs
    for name in ("trained", "untrained"):
        res = run_cli("train", "export", root / name, "--out", tmp_path / f"adapter-{name}", "--quiet")
        assert res.code == EXIT_OK, res.stderr
        (event,) = res.events
        assert event["weights"] == "raw" if name == "trained" else "ema"
        assert sorted(p.name for p in (tmp_path / f"adapter-{name}").iterdir()) == ["ss.json", "ss.safetensors"]
        load_adapter(tmp_path / f"adapter-{name}", AdapterStage.ss)  # strict

    demo_image(128).save(tmp_path / "photo.png")
    common = ["generate", tmp_path / "photo.png", "--back", "a handle", "--seed", "3", "--quiet", "preset=tiny",
              f"models.tiny_root={tiny_root}", "trellis2.pipeline_type=ss", "trellis2.ss.steps=2",
              "adapter.stages=[ss]"]
    meshes = {}
    for name, mode in (("plain", ["--mode", "trellis"]),
                       ("untrained", ["--mode", "know3d", f"adapter.weights={tmp_path / 'adapter-untrained'}"]),
                       ("trained", ["--mode", "know3d", f"adapter.weights={tmp_path / 'adapter-trained'}"])):
        res = run_cli(*common, *mode, "--out", tmp_path / name)
        assert res.code == EXIT_OK, res.stderr
        meshes[name] = trimesh.load(tmp_path / name / "photo" / "model.glb", force="mesh")
    assert meshes["untrained"].vertices.shape == meshes["plain"].vertices.shape
    assert (meshes["untrained"].vertices == meshes["plain"].vertices).all()
    trained, plain = meshes["trained"].vertices, meshes["plain"].vertices
    assert trained.shape != plain.shape or abs(trained - plain).max() > 1e-4


def test_full_flow_training_exports_the_trellis2_layout(tiny_root, train_data, tmp_path, run_cli, one_thread):
    from know3d_cli.tiny.trellis2 import TRELLIS2_DIR
    from know3d_cli.trellis2.checkpoint import load_model

    run_training(load_config(train_overrides(tiny_root, train_data, tmp_path / "run", *SHAPE, "train.steps=1",
                                             "train.trainable=flow", "train.optimizer.lr=1e-2")))
    res = run_cli("train", "export", tmp_path / "run", "--out", tmp_path / "out", "--raw", "--quiet")
    assert res.code == EXIT_OK, res.stderr
    name = "slat_flow_img2shape_dit_1_3B_512_bf16"
    assert sorted(p.name for p in (tmp_path / "out" / "ckpts").iterdir()) == [f"{name}.json", f"{name}.safetensors"]
    released = load_file(tiny_root / TRELLIS2_DIR / "ckpts" / f"{name}.safetensors")
    exported = load_file(tmp_path / "out" / "ckpts" / f"{name}.safetensors")
    assert exported.keys() == released.keys() and all(t.dtype == torch.bfloat16 for t in exported.values())
    assert any(not torch.equal(exported[k], released[k]) for k in released)
    load_model(tmp_path / "out" / "ckpts" / name)  # strict


# ------------------------------------------------------------------------------------------------ bad input
def test_configuration_and_dataset_errors(run_cli, tiny_root, train_data, tmp_path):
    base = ["preset=tiny", f"models.tiny_root={tiny_root}", f"train.output_dir={tmp_path / 'run'}", "--quiet"]
    res = run_cli("train", *base)
    assert res.code == EXIT_USAGE and "train.dataset is required" in error_line(res.stderr)
    res = run_cli("train", *base, "train.stage=ss2")
    assert res.code == EXIT_USAGE and "train.stage" in error_line(res.stderr)
    res = run_cli("train", *base, f"train.dataset={tmp_path}")
    assert res.code == EXIT_MISSING and "dataset.json not found" in error_line(res.stderr)
    res = run_cli("train", *base, f"train.dataset={train_data}", "train=shape_1024")
    assert res.code == EXIT_MISSING and "shape latents are at 512" in error_line(res.stderr)
    broken = tmp_path / "broken"
    shutil.copytree(train_data, broken)
    latents = next((broken / "samples").iterdir()) / "latents.safetensors"
    latents.write_bytes(latents.read_bytes()[:64])
    res = run_cli("train", *base, f"train.dataset={broken}")
    assert res.code == EXIT_MISSING and "latents.safetensors" in error_line(res.stderr)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resuming_a_run_without_ema_starts_the_average_from_the_checkpoint(tiny_root, train_data, tmp_path,
                                                                            one_thread):
    common = [*SHAPE, "train.optimizer.lr=1e-2"]
    run_training(load_config(train_overrides(tiny_root, train_data, tmp_path, "train.steps=1", "train.ema.rate=0",
                                             *common)))
    assert not (tmp_path / "checkpoints" / "step-0000001" / "ema.safetensors").exists()
    run_training(load_config(train_overrides(tiny_root, train_data, tmp_path, "train.steps=2", "train.ema.rate=0.5",
                                             "train.ema.warmup=false", *common)), resume="latest")
    step1 = load_file(tmp_path / "checkpoints" / "step-0000001" / "trainable.safetensors")
    step2 = load_file(tmp_path / "checkpoints" / "step-0000002" / "trainable.safetensors")
    ema = load_file(tmp_path / "checkpoints" / "step-0000002" / "ema.safetensors")
    for key in ema:
        torch.testing.assert_close(ema[key], 0.5 * step1[key] + 0.5 * step2[key])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_a_cuda_request_without_a_gpu_is_exit_4(run_cli, tiny_root, train_data, tmp_path):
    res = run_cli("train", *train_overrides(tiny_root, train_data, tmp_path, "runtime.device=cuda"), "--quiet")
    assert res.code == 4 and "no CUDA GPU" in error_line(res.stderr)
    assert not (tmp_path / "checkpoints").exists()
