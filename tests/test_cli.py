"""CLI behaviour that needs no model: config, errors and exit codes, info commands."""

import subprocess
import sys

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


def test_invalid_data_settings_are_usage_errors(run_cli, tmp_path):
    for override, needle in [("data.dino_resolutions=[1024]", "data.dino_resolutions"),
                             ("data.dino_resolutions=[512,768]", "data.dino_resolutions"),
                             ("data.prompts.p_empty=1.5", "data.prompts.p_empty"),
                             ("data.prompts.variants=0", "data.prompts.variants"),
                             ("data.text.source=gpt", "data.text.source"),
                             ("data.text.separator=''", "data.text.separator"),
                             ("data.group_size=0", "data.group_size")]:
        res = run_cli("data", "build", tmp_path, "--out", tmp_path / "out", override)
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
    assert set(names) == {"editor", "mllm", "dinov3", "trellis2", "ss_decoder", "birefnet", "trellis2_encoders",
                          "ss_encoder"}
    assert names["mllm"]["needed"] and not names["birefnet"]["needed"]
    assert not names["trellis2_encoders"]["needed"] and not names["ss_encoder"]["needed"]  # data build only
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


def test_importing_the_cli_does_not_load_torch():
    code = "import sys, know3d_cli.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"  # `know3d --help` and usage errors answer at once


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


def test_encoders_are_pulled_only_on_request(run_cli, tmp_path, monkeypatch):
    from fnmatch import fnmatch

    import huggingface_hub

    from know3d_cli import hub as hub_module
    from know3d_cli.config import load_config

    hub = FakeHub(tmp_path)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    res = run_cli("models", "pull", "trellis2_encoders", "ss_encoder", "--quiet")
    assert res.code == 0, res.stderr
    assert [(c["repo"], c["patterns"]) for c in hub.calls] == [
        ("microsoft/TRELLIS.2-4B", ["ckpts/shape_enc_*", "ckpts/tex_enc_*"]),
        ("microsoft/TRELLIS-image-large", ["ckpts/ss_enc_conv3d_16l8_fp16.*"]),
    ]
    cfg = load_config(["mllm.expand=true", "preprocess.background=birefnet"])  # every optional generate model
    needed = hub_module.needed_models(cfg)
    assert not set(hub_module.ENCODER_MODELS) & set(needed)
    released = [f"ckpts/{stem}.{ext}" for stem in ("shape_enc_next_dc_f16c32_fp16", "tex_enc_next_dc_f16c32_fp16",
                                                   "ss_enc_conv3d_16l8_fp16") for ext in ("json", "safetensors")]
    encoder_repos = {hub_module.spec_of(cfg, name).repo for name in hub_module.ENCODER_MODELS}
    same_repo = [name for name in needed if hub_module.spec_of(cfg, name).repo in encoder_repos]
    assert same_repo == ["trellis2", "ss_decoder"]
    for name in same_repo:  # generate's downloads stay as they were: no pattern of theirs matches an encoder file
        patterns = hub_module.spec_of(cfg, name).files
        assert patterns and not any(fnmatch(f, p) for f in released for p in patterns), name
    for name in hub_module.ENCODER_MODELS:  # each encoder model fetches its own two files and nothing else
        patterns = hub_module.spec_of(cfg, name).files
        assert sum(any(fnmatch(f, p) for p in patterns) for f in released) == (4 if name == "trellis2_encoders" else 2)


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


def test_bare_know3d_prints_help_and_exits_0(run_cli):
    res = run_cli()
    assert res.code == 0 and "error" not in res.stderr
    assert "Commands" in res.stdout and "generate" in res.stdout


def test_mode_and_preview_help_show_the_config_defaults(run_cli, monkeypatch):
    from know3d_cli.config import Know3dConfig

    monkeypatch.setenv("COLUMNS", "400")  # one help line per option
    for command in ("generate", "batch"):
        res = run_cli(command, "--help")
        assert res.code == 0
        lines = {line.split()[1]: line for line in res.stdout.splitlines() if line.startswith("│ --")}
        assert f"(default: {Know3dConfig().mode.value})" in lines["--mode"]
        assert f"(default: {Know3dConfig().preview.value})" in lines["--preview"]


def test_instant_commands_load_no_torch_diffusers_or_transformers(tmp_path):
    # `config show`, `models list`, `doctor` and config errors answer in about a second (BENCHMARKS.md "Start-up")
    code = f"""
import sys
from know3d_cli.cli import main
codes = [main(["config", "show"]), main(["models", "list", "models.cache_dir={tmp_path}"]),
         main(["doctor", "--out", "{tmp_path / 'out'}", "models.cache_dir={tmp_path}"]),
         main(["config", "show", "tap.block=abc"]), main(["generate", "{tmp_path / 'x.png'}", "no_such.key=1"]),
         main(["batch", "{tmp_path / 'm.csv'}", "mode=sideways"])]
print(codes, sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules), file=sys.stderr)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[0, 0, 0, 2, 2, 2] []"


def test_doctor_reports_gpus_without_torch(monkeypatch):
    from know3d_cli import machine

    class Done:
        returncode = 0
        stdout = "0, NVIDIA H200, 570.86.15, 143771, 140000, 9.0\n1, NVIDIA H200, 570.86.15, 143771, [N/A], [N/A]\n"
        stderr = ""

    monkeypatch.setattr(machine.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(machine.subprocess, "run", lambda *a, **k: Done())
    first, second = machine.gpus()
    assert first == machine.GpuInfo(0, "NVIDIA H200", "570.86.15", "9.0", 140.4, 136.72)
    assert second.capability is None and second.memory_free_gb is None
    monkeypatch.setattr(machine.shutil, "which", lambda name: None)
    assert machine.gpus() == []
    assert machine.torch_cuda_build() is None or machine.torch_cuda_build()[0].isdigit()


def test_generate_refuses_the_ray_engine_before_any_work(run_cli, tmp_path):
    res = run_cli("generate", tmp_path / "mug.png", "--out", tmp_path / "out", "engine=ray")
    assert res.code == 2 and res.stdout == ""
    assert "know3d batch -" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()
