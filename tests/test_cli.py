"""CLI behaviour that needs no model: config, errors and exit codes, info commands."""



from know3d_cli.errors import EXIT_MISSING, EXIT_USAGE


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_config_show_applies_overrides_and_groups(run_cli):
    res = run_cli("config", "show", "preset=tiny", "tap.block=0", "editor.steps=6")
    assert res.code == 0
    assert "block: 0" in res.stdout and "steps: 6" in res.stdout
    assert "tiny-qwen-image-edit" in res.stdout


def test_unknown_override_key_is_usage_error(run_cli, tmp_path):
    res = run_cli("generate", tmp_path / "x.png", "tap.blok=3")
    assert res.code == EXIT_USAGE
    line = _one_error_line(res.stderr)
    assert "tap.blok" in line and "blok" in line
    assert res.stdout == ""


def test_invalid_override_value_is_usage_error(run_cli, tmp_path):
    for override, needle in [("tap.block=abc", "abc"), ("mode=sideways", "mode"), ("tap.step_frac=1.5", "step_frac"),
                             ("editor=nope", "editor/nope")]:
        res = run_cli("generate", tmp_path / "x.png", override)
        assert res.code == EXIT_USAGE, override
        assert needle in _one_error_line(res.stderr)


def test_know3d_mode_without_adapter_is_missing_model(run_cli, tmp_path):
    res = run_cli("generate", tmp_path / "x.png", "--mode", "know3d", "--out", tmp_path / "out")
    assert res.code == EXIT_MISSING
    assert "adapter" in _one_error_line(res.stderr)
    assert not (tmp_path / "out").exists()


def test_missing_model_dir_names_model_and_fix(run_cli, tmp_path):
    res = run_cli("generate", tmp_path / "x.png", "preset=tiny", f"models.tiny_root={tmp_path / 'none'}",
                  "--out", tmp_path / "out")
    assert res.code == EXIT_MISSING
    line = _one_error_line(res.stderr)
    assert "not found" in line and "know3d demo" in line
    assert not (tmp_path / "out").exists()


def test_hub_model_not_downloaded_says_how_to_pull(run_cli, tmp_path):
    res = run_cli("generate", tmp_path / "x.png", f"models.cache_dir={tmp_path / 'hub'}", "--out", tmp_path / "out")
    assert res.code == EXIT_MISSING
    assert "know3d models pull" in _one_error_line(res.stderr)


def test_models_verify_reports_missing_and_exits_3(run_cli, tmp_path):
    res = run_cli("models", "verify", f"models.cache_dir={tmp_path}")
    assert res.code == EXIT_MISSING
    events = res.events
    assert {e["name"] for e in events} == {"editor", "dinov3", "trellis2", "ss_decoder"}
    assert all(not e["ok"] for e in events)


def test_models_list_one_json_line_per_model(run_cli, tmp_path):
    res = run_cli("models", "list", f"models.cache_dir={tmp_path}", "mllm.expand=true")
    assert res.code == 0
    names = {e["name"]: e for e in res.events}
    assert set(names) == {"editor", "mllm", "dinov3", "trellis2", "ss_decoder", "birefnet"}
    assert names["mllm"]["needed"] and not names["birefnet"]["needed"]
    assert names["dinov3"]["gated"]


def test_doctor_prints_one_json_object(run_cli, tmp_path):
    res = run_cli("doctor", "--out", tmp_path / "out", f"models.cache_dir={tmp_path}")
    assert res.code == 0
    (report,) = res.events
    assert report["event"] == "doctor"
    assert report["output_dir"]["writable"] is True
    assert report["ready"] is False and "know3d models pull" in report["pull_command"]
    assert report["models"]["dinov3"]["notes"]
    assert "torch" in report["versions"]


def test_unknown_command_is_usage_error(run_cli):
    res = run_cli("bogus")
    assert res.code == EXIT_USAGE
    _one_error_line(res.stderr)


def test_safetensors_truncation_detected(tmp_path):
    import torch
    from safetensors.torch import save_file

    from know3d_cli.hub import _check_safetensors

    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(100)}, str(path))
    assert _check_safetensors(path, path.stat().st_size) is None
    data = path.read_bytes()
    path.write_bytes(data[:-40])
    assert "truncated" in _check_safetensors(path, path.stat().st_size)


class FakeHub:
    """Stands in for `huggingface_hub.snapshot_download`: records calls, serves only what was "downloaded"."""

    def __init__(self, root):
        self.root, self.calls = root, []

    def __call__(self, repo_id, revision=None, allow_patterns=None, cache_dir=None, local_files_only=False):
        from huggingface_hub.errors import LocalEntryNotFoundError

        self.calls.append({"repo": repo_id, "patterns": allow_patterns, "local_only": local_files_only})
        folder = self.root / repo_id.replace("/", "--") / "snapshots" / "abc123"
        if local_files_only and not folder.is_dir():
            raise LocalEntryNotFoundError(f"{repo_id} not in the cache")
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)


def test_models_pull_fetches_only_the_needed_files(run_cli, tmp_path, monkeypatch):
    import huggingface_hub

    hub = FakeHub(tmp_path)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    res = run_cli("models", "pull", "ss_decoder", "trellis2", "--quiet")
    assert res.code == 0, res.stderr
    assert [e["name"] for e in res.events] == ["ss_decoder", "trellis2"]
    first = hub.calls[0]
    assert first == {"repo": "microsoft/TRELLIS-image-large", "patterns": ["ckpts/ss_dec_conv3d_16l8_fp16.*"],
                     "local_only": False}
    assert res.events[0]["revision"] == "abc123"


def test_generation_never_downloads_unless_allowed(run_cli, tmp_path, monkeypatch):
    import huggingface_hub

    hub = FakeHub(tmp_path)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    res = run_cli("generate", tmp_path / "x.png", "--out", tmp_path / "out")
    assert res.code == EXIT_MISSING
    assert hub.calls and all(call["local_only"] for call in hub.calls)
    assert "know3d models pull" in _one_error_line(res.stderr)


def test_progress_notes_update_the_running_stage(monkeypatch):
    import sys

    from know3d_cli.progress import Progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with Progress() as progress:
        with progress.stage("trellis2", "mug"):
            progress.note("shape")
            (task,) = progress._rich.tasks
            assert task.description == "mug trellis2: shape"
        assert not progress._rich.tasks
        progress.note("ignored outside a stage")
    assert not Progress(enabled=False).enabled
