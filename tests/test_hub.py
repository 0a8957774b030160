"""`hub`: which models a run needs, where their files are (a local folder or the pinned hub snapshot, never a
download unless allowed), and whether they are whole."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from know3d_cli import hub
from know3d_cli.config import load_config
from know3d_cli.errors import ModelMissingError
from know3d_cli.hub import _check_safetensors


@pytest.mark.parametrize("overrides, needed", [
    ([], ["editor", "dinov3", "trellis2", "ss_decoder"]),
    (["mode=trellis"], ["dinov3", "trellis2", "ss_decoder"]),
    (["mllm.expand=true", "preprocess.background=birefnet"],
     ["birefnet", "mllm", "editor", "dinov3", "trellis2", "ss_decoder"]),
])
def test_a_run_needs_the_models_of_its_stages_in_chain_order(overrides, needed):
    assert hub.needed_models(load_config(overrides)) == needed


def test_an_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ModelMissingError, match="unknown model name 'vae'; expected one of: editor, mllm"):
        hub.spec_of(load_config([]), "vae")


def test_a_local_folder_replaces_the_hub_and_a_missing_one_says_how_to_fix_it(tmp_path):
    (tmp_path / "dino").mkdir()
    cfg = load_config([f"models.dinov3.path={tmp_path / 'dino'}", f"models.editor.path={tmp_path / 'absent'}"])
    model = hub.resolve(cfg, "dinov3")
    assert (model.path, model.revision, model.repo) == (tmp_path / "dino", None, cfg.models.dinov3.repo)
    with pytest.raises(ModelMissingError, match="fix models.editor.path, or unset it and run `know3d models pull"):
        hub.resolve(cfg, "editor")
    tiny = load_config(["preset=tiny", f"models.tiny_root={tmp_path / 'absent'}"])
    with pytest.raises(ModelMissingError, match="run `know3d demo` once to create the tiny models"):
        hub.resolve(tiny, "editor")


def _http_error(cls: type[Exception], message: str) -> Exception:
    """A huggingface_hub HTTP error without the HTTP response its constructor reads."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


def _failing_hub(error: Exception):
    def snapshot_download(**kwargs):
        raise error

    return snapshot_download


@pytest.mark.parametrize("make_error, words", [
    (lambda e: e.LocalEntryNotFoundError("not cached"), "is not downloaded (HF_HUB_OFFLINE is set); run `know3d "
                                                        "models pull dinov3` or pass models.allow_download=true"),
    (lambda e: _http_error(e.GatedRepoError, "gated"), "is gated: accept its licence"),
    (lambda e: _http_error(e.RepositoryNotFoundError, "missing"), "was not found on the hub"),
    (lambda e: OSError("connection reset"), "could not fetch"),
])
def test_hub_failures_are_exit_3_with_the_fix(monkeypatch, make_error, words):
    import huggingface_hub
    from huggingface_hub import errors

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _failing_hub(make_error(errors)))
    with pytest.raises(ModelMissingError) as info:
        hub.resolve(load_config([]), "dinov3")
    assert words in str(info.value) and info.value.exit_code == 3


def test_a_snapshot_is_downloaded_only_when_allowed(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def snapshot_download(repo_id, revision, allow_patterns, cache_dir, local_files_only):
        calls.append(local_files_only)
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        (tmp_path / "abc123").mkdir(exist_ok=True)
        return str(tmp_path / "abc123")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    with pytest.raises(ModelMissingError):
        hub.resolve(load_config([]), "dinov3")
    assert calls == [True]
    model = hub.resolve(load_config(["models.allow_download=true"]), "dinov3")
    assert calls == [True, True, False] and (model.path, model.revision) == (tmp_path / "abc123", "abc123")


def test_verify_names_every_broken_file(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"w": torch.zeros(100)}, str(folder / "good.safetensors"))
    (folder / "cut.safetensors").write_bytes((folder / "good.safetensors").read_bytes()[:-40])
    (folder / "config.json").write_text("{not json")
    (folder / "empty.bin").write_bytes(b"")
    report = hub.verify(load_config([f"models.dinov3.path={folder}"]), "dinov3")
    assert report.present and not report.ok and report.files == 4
    assert sorted(p.split(":")[0].split(" ")[0] for p in report.problems) == [
        "config.json", "cut.safetensors", "empty.bin"]
    missing = hub.verify(load_config([f"models.dinov3.path={tmp_path / 'absent'}"]), "dinov3")
    assert not missing.present and "not found" in missing.problems[0]


def test_a_whole_folder_verifies(tmp_path):
    save_file({"w": torch.zeros(10)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    report = hub.verify(load_config([f"models.dinov3.path={tmp_path}"]), "dinov3")
    assert report.ok and report.files == 2 and report.bytes == sum(p.stat().st_size for p in tmp_path.iterdir())


def test_safetensors_truncation_detected(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(100)}, str(path))
    assert _check_safetensors(path, path.stat().st_size) is None
    data = path.read_bytes()
    path.write_bytes(data[:-40])
    assert "truncated" in _check_safetensors(path, path.stat().st_size)


def test_tiny_preset_finds_the_tiny_encoders(tiny_root):
    from know3d_cli.trellis2.checkpoint import read_checkpoint_json

    cfg = load_config(["preset=tiny", f"models.tiny_root={tiny_root}"])
    ss = hub.resolve(cfg, "ss_encoder").path / "ckpts" / "ss_enc_conv3d_16l8_fp16"
    shape = hub.resolve(cfg, "trellis2_encoders").path / "ckpts" / "shape_enc_next_dc_f16c32_fp16"
    assert read_checkpoint_json(ss).name == "SparseStructureEncoder"
    assert read_checkpoint_json(shape).name == "FlexiDualGridVaeEncoder"
