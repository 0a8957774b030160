"""`know3d train editor-lora` on the tiny editor: the loss falls, the file loads through `editor.lora` and changes
the edit."""

from __future__ import annotations

from dataclasses import replace

import torch
from PIL import Image

from know3d_cli.config import load_config
from know3d_cli.editor import imagine_back, load_editor
from know3d_cli.runtime import resolve_runtime
from know3d_cli.train.dataset import TrainingDataset
from know3d_cli.train.editor_lora import LORA_FILE, EditFlowMatching, encode_edit, train_editor_lora
from know3d_cli.train_config import TrainStage


def test_editor_lora_learns_a_pair_and_changes_the_edit(tiny_root, train_data, tmp_path, one_thread):
    cfg = load_config(["preset=tiny", f"models.tiny_root={tiny_root}", f"train.dataset={train_data}",
                       f"train.editor_lora.output={tmp_path / 'lora'}", "train.editor_lora.steps=12",
                       "train.editor_lora.lr=1e-2", "train.editor_lora.rank=4", "train.editor_lora.alpha=8",
                       "train.log_every=4", "runtime.device=cpu"])
    runtime = resolve_runtime(cfg.runtime)
    pipe = load_editor(tiny_root / "editor", cfg.editor, runtime)
    entry = TrainingDataset(train_data, TrainStage.ss, need_hdit=False).entries[0]
    probe = encode_edit(pipe, entry, 0, cfg.editor)
    objective = EditFlowMatching.for_pipeline(pipe, "none", 0.0, 1.0, 1.29)
    sigma = torch.tensor([0.6])
    noise = torch.randn(probe.target.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = objective.loss(pipe.transformer, probe, sigma, noise).item()

    records: list[dict] = []
    result = train_editor_lora(cfg, emit=records.append, pipe=pipe)
    with torch.no_grad():
        after = objective.loss(pipe.transformer, probe, sigma, noise).item()
    assert after < 0.9 * before, (before, after)
    assert [r["step"] for r in records if r["event"] == "editor_lora"] == [4, 8, 12]
    assert result.path == tmp_path / "lora" / LORA_FILE and result.path.is_file()
    assert sorted(p.name for p in (tmp_path / "lora").iterdir()) == [LORA_FILE]  # no temporary left

    image = Image.open(entry.dir / "front.png").convert("RGB")
    taps = {}
    for name, lora in (("base", None), ("lora", str(result.path))):
        editor = load_editor(tiny_root / "editor", replace(cfg.editor, lora=lora), runtime)
        taps[name] = imagine_back(editor, image, entry.prompts[0], cfg.editor, cfg.tap, preview="none",
                                  generator=torch.Generator().manual_seed(1)).hidden
    assert taps["base"].shape == taps["lora"].shape
    assert not torch.allclose(taps["base"], taps["lora"])
