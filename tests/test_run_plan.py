"""`plan_run`: the mode that runs and the Know3D adapter it needs, decided before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from know3d_cli.config import Know3dConfig, Mode, load_config
from know3d_cli.errors import ModelMissingError
from know3d_cli.run_plan import AUTO_FALLBACK_WARNING, plan_run


def config(*overrides: str) -> Know3dConfig:
    return load_config(["preset=tiny", "models.tiny_root=/nonexistent", *overrides])


def adapter_folder(path: Path, stages=("ss", "shape", "tex")) -> Path:
    path.mkdir()
    for stage in stages:
        (path / f"{stage}.json").write_text("{}")
        (path / f"{stage}.safetensors").write_bytes(b"")
    return path


@pytest.mark.parametrize("mode", [Mode.know3d, Mode.auto])
def test_know3d_and_auto_with_adapter_weights_run_know3d(tmp_path, mode):
    weights = adapter_folder(tmp_path / "adapter")
    plan = plan_run(config(f"mode={mode}", f"adapter.weights={weights}"))
    assert plan.mode is Mode.know3d and plan.adapter_dir == weights and plan.warnings == ()
    assert plan.uses_editor


def test_auto_without_adapter_weights_falls_back_to_multiview_and_says_so(caplog):
    plan = plan_run(config("mode=auto"))
    assert plan.mode is Mode.multiview and plan.adapter_dir is None
    assert plan.warnings == (AUTO_FALLBACK_WARNING,) and AUTO_FALLBACK_WARNING in caplog.text


@pytest.mark.parametrize("mode, uses_editor", [(Mode.multiview, True), (Mode.trellis, False)])
def test_modes_without_the_adapter_ignore_its_weights(tmp_path, mode, uses_editor):
    plan = plan_run(config(f"mode={mode}", f"adapter.weights={tmp_path / 'absent'}"))
    assert plan.mode is mode and plan.adapter_dir is None and plan.uses_editor is uses_editor


def test_know3d_without_weights_is_exit_3_with_the_fix():
    with pytest.raises(ModelMissingError, match="adapter.weights=DIR") as info:
        plan_run(config("mode=know3d"))
    assert "--mode multiview" in str(info.value) and info.value.exit_code == 3


def test_an_incomplete_adapter_folder_names_every_missing_file(tmp_path):
    weights = adapter_folder(tmp_path / "adapter", stages=("ss",))
    (weights / "ss.json").unlink()
    with pytest.raises(ModelMissingError) as info:
        plan_run(config("mode=know3d", f"adapter.weights={weights}", "adapter.stages=[ss,tex]"))
    assert str(info.value).endswith("lacks ss.json, tex.json, tex.safetensors")


def test_no_adapter_stage_is_refused(tmp_path):
    weights = adapter_folder(tmp_path / "adapter")
    with pytest.raises(ModelMissingError, match=r"adapter.stages=\[\]"):
        plan_run(config("mode=know3d", f"adapter.weights={weights}", "adapter.stages=[]"))
