"""`StageModels`: models found before any work, loaded on first use, resident only while their stage runs, in the
declared stage order, dropped after a single run; out-of-memory as a one-line error."""

from __future__ import annotations

import pytest
import torch

from know3d_cli import stage_models
from know3d_cli.config import load_config
from know3d_cli.errors import ModelMissingError, OutOfMemory
from know3d_cli.run_plan import plan_run
from know3d_cli.runtime import Runtime
from know3d_cli.stage_models import STAGE_SEQUENCE, StageModels
from know3d_cli.trellis2 import AttentionBackend, ConvBackend, Offload


class Network:
    """Records where it is sent."""

    def __init__(self, name: str):
        self.name = name
        self.moves: list[str] = []

    def to(self, device):
        self.moves.append(torch.device(device).type)
        return self


def runtime(device: str, offload: Offload = Offload.sequential) -> Runtime:
    return Runtime(torch.device(device), torch.float32, offload, False, AttentionBackend.auto, ConvBackend.auto)


@pytest.fixture
def models(tiny_root, monkeypatch):
    """`models(device, keep=False, *overrides)` with recording stand-ins for the loaders and the GPU cache."""
    freed: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(True))
    monkeypatch.setattr(stage_models, "reset_peak_memory", lambda runtime: None)

    def make(device: str = "cpu", keep: bool = False, *overrides: str) -> StageModels:
        cfg = load_config(["preset=tiny", f"models.tiny_root={tiny_root}", "mode=multiview", *overrides])
        built = StageModels(cfg, plan_run(cfg), runtime(device), keep=keep)
        built.loads = []
        built.freed = freed
        for name in STAGE_SEQUENCE:
            def load(path, name=name):
                built.loads.append(name)
                return Network(name)
            built._loaders[name] = load
        return built

    return make


def test_the_models_of_the_configured_run_are_found_before_any_work(tiny_root, models):
    assert list(models().resolved) == ["editor", "dinov3", "trellis2", "ss_decoder"]
    assert list(models("cpu", False, "mode=trellis", "mllm.expand=true").resolved) == [
        "mllm", "dinov3", "trellis2", "ss_decoder"]
    with pytest.raises(ModelMissingError, match="model editor not found"):
        models("cpu", False, f"models.editor.path={tiny_root / 'absent'}")


def test_a_single_run_loads_each_model_when_its_stage_starts_and_drops_it_after(models):
    single = models("cuda")
    single.start_asset()
    with single.using("birefnet") as masker:  # preprocess.background is not birefnet: nothing to load
        assert masker is None
    with single.using("editor") as editor:
        assert single.loads == ["editor"] and editor.moves == ["cuda"]
    assert editor.moves == ["cuda", "cpu"] and len(single.freed) == 2  # offloaded, then dropped
    with single.using("trellis2") as trellis:
        assert trellis.moves == []  # TRELLIS.2 moves its own networks
    single.start_asset()
    with single.using("editor"):
        pass
    assert single.loads == ["editor", "trellis2", "editor"]  # loaded again for the next asset


def test_a_batch_keeps_its_models_loaded(models):
    batch = models("cuda", True)
    for _ in range(2):
        batch.start_asset()
        with batch.using("editor") as editor, batch.using("trellis2"):
            pass
    assert batch.loads == ["editor", "trellis2"] and editor.moves == ["cuda", "cpu"] * 2
    assert len(batch.freed) == 4  # after each stage of each asset; nothing dropped
    batch.release_all()  # the batch moves on to rows with other settings
    assert len(batch.freed) == 5
    batch.start_asset()
    with batch.using("editor"):
        pass
    assert batch.loads == ["editor", "trellis2", "editor"]  # loaded again


@pytest.mark.parametrize("device, offload", [("cpu", Offload.sequential), ("cuda", Offload.none)])
def test_without_offloading_models_stay_on_the_device(models, device, offload):
    kept = models(device, True)
    kept.residency.offload = offload
    kept.start_asset()
    with kept.using("editor") as editor:
        pass
    assert editor.moves == [device] and kept.freed == []


def test_stages_run_in_the_declared_order(models):
    single = models()
    single.start_asset()
    with single.using("trellis2"):
        pass
    with pytest.raises(ValueError, match="out of the declared order"):
        with single.using("editor"):
            pass


def test_out_of_memory_is_a_one_line_error_with_what_to_try(models):
    single = models("cuda")
    single.start_asset()
    with pytest.raises(OutOfMemory, match=r"during 3D generation \(TRELLIS.2\); try runtime.offload=sequential"):
        with single.using("trellis2"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    assert single._loaded == {} and single.freed  # the cache freed, the model dropped


def test_background_auto_uses_birefnet_only_when_its_weights_are_on_disk(tiny_root, models, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    absent = models("cpu", False, f"models.cache_dir={tmp_path / 'hf'}")  # auto, the default: never downloads
    assert "birefnet" not in absent.resolved
    with absent.using("birefnet") as masker:
        assert masker is None and absent.loads == []  # the threshold mask, checked
    (tmp_path / "birefnet").mkdir()
    pulled = models("cpu", False, f"models.birefnet.path={tmp_path / 'birefnet'}")
    assert pulled.resolved["birefnet"].path == tmp_path / "birefnet"
    with pulled.using("birefnet") as masker:
        assert masker.name == "birefnet" and pulled.loads == ["birefnet"]
    assert "birefnet" not in models("cpu", False, "preprocess.background=threshold",
                                    f"models.birefnet.path={tmp_path / 'birefnet'}").resolved
