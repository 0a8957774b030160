"""The editor wrapper on the tiny random Qwen-Image-Edit-2511: tap position, shapes, early stop, x0 preview."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from diffusers import QwenImageEditPlusPipeline  # noqa: E402
from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as edit_module  # noqa: E402
from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as plus_module  # noqa: E402

from know3d_cli.config import EditorConfig, TapConfig  # noqa: E402
from know3d_cli.editor import condition_area, hidden_state_tap, imagine_back, load_editor, tap_step_index  # noqa: E402
from know3d_cli.editor.run import x0_estimate  # noqa: E402
from know3d_cli.errors import BackendUnavailable, ConfigError, ModelMissingError  # noqa: E402
from know3d_cli.runtime import Runtime  # noqa: E402
from know3d_cli.tiny.editor import TINY_EDITOR_HIDDEN  # noqa: E402

CPU = Runtime(torch.device("cpu"), torch.float32, "none", False, "auto", "auto")
CFG = EditorConfig(pipeline="plus", steps=8, true_cfg_scale=4.0, negative_prompt=" ", resolution=64,
                   condition_area=4096)
TAP = TapConfig(block=1, step_frac=0.25, tokens="target")
PROMPT = "Show the reverse side of the subject as seen from rotating the camera 180 degrees. a zip pocket"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def editor_dir(tiny_root):
    return tiny_root / "editor"


@pytest.fixture(scope="module")
def pipe(editor_dir):
    return load_editor(editor_dir, CFG, CPU)


@pytest.fixture(scope="module")
def photo():
    gen = torch.Generator().manual_seed(1)
    pixels = (torch.rand(72, 72, 3, generator=gen) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


def run(pipe, photo, cfg=CFG, tap=TAP, preview="x0", need_full_image=False, on_step=None):
    return imagine_back(pipe, photo, PROMPT, cfg, tap, preview=preview,
                        generator=torch.Generator().manual_seed(0), need_full_image=need_full_image, on_step=on_step)


def test_step_index_rounding_and_clamp():
    assert tap_step_index(0.25, 8) == 2
    assert tap_step_index(0.25, 40) == 10
    assert tap_step_index(0.25, 50) == 12
    assert tap_step_index(0.0, 8) == 0
    assert tap_step_index(1.0, 8) == 7


def test_x0_tap_shape_step_and_forward_count(pipe, photo):
    tap = run(pipe, photo, preview="x0")
    assert tap.hidden.shape == (1, 8, 8, TINY_EDITOR_HIDDEN)  # 64 px, tiny VAE 4x, 2x2 patches
    assert tap.grid == (8, 8)
    assert tap.step_index == 2
    # steps 0, 1 and 2 each ran their cond and uncond passes; nothing after the tap step
    assert tap.forwards == 6
    assert tap.timestep == pytest.approx(float(pipe.scheduler.timesteps[2]))
    assert tap.sigma == pytest.approx(float(pipe.scheduler.sigmas[2]))
    assert 0.0 < tap.sigma < 1.0
    assert isinstance(tap.preview, Image.Image)
    assert tap.preview.size == (64, 64) and tap.preview.mode == "RGB"
    assert torch.isfinite(tap.hidden).all()


def test_full_run_and_no_preview_tap_the_same_states(pipe, photo):
    x0_steps, full_steps = [], []
    x0 = run(pipe, photo, preview="x0", on_step=lambda n, total: x0_steps.append((n, total)))
    full = run(pipe, photo, preview="full", on_step=lambda n, total: full_steps.append((n, total)))
    assert full_steps == [(n, 8) for n in range(1, 9)]  # the progress bar's n/N
    assert x0_steps == [(1, 3), (2, 3)]  # stopped inside tap step 2 (of 0, 1, 2)
    none = run(pipe, photo, preview="none")
    assert full.forwards == 16  # 8 steps x (cond + uncond)
    assert none.forwards == 5  # stopped inside the cond pass of step 2
    assert isinstance(full.preview, Image.Image) and full.preview.size == (64, 64)
    assert none.preview is None
    torch.testing.assert_close(full.hidden, x0.hidden, rtol=0, atol=0)
    torch.testing.assert_close(none.hidden, x0.hidden, rtol=0, atol=0)
    # multiview needs the finished image even when no preview was asked for
    multi = run(pipe, photo, preview="none", need_full_image=True)
    assert multi.forwards == 16 and isinstance(multi.preview, Image.Image)


def test_tap_is_the_cond_pass_of_the_tap_step(pipe, photo):
    """Compare with every block output recorded independently during a full run."""
    seen = []
    handle = pipe.transformer.transformer_blocks[TAP.block].register_forward_hook(
        lambda m, a, k, out: seen.append(out[1][:, :64].clone()), with_kwargs=True)
    try:
        tap = run(pipe, photo, preview="full")
    finally:
        handle.remove()
    assert len(seen) == 16
    flat = tap.hidden.reshape(1, 64, -1)
    torch.testing.assert_close(flat, seen[2 * 2], rtol=0, atol=0)  # step 2, first (cond) pass
    assert not torch.allclose(flat, seen[2 * 2 + 1])  # the uncond pass differs
    assert not torch.allclose(flat, seen[2 * 1])  # so does step 1


def test_without_cfg_one_forward_per_step(pipe, photo):
    cfg = EditorConfig(**{**CFG.__dict__, "true_cfg_scale": 1.0})
    tap = run(pipe, photo, cfg=cfg, preview="x0")
    assert tap.forwards == 3 and tap.step_index == 2
    assert run(pipe, photo, cfg=cfg, preview="full").forwards == 8


def test_x0_uses_the_true_cfg_velocity_of_the_tap_step(pipe, photo, monkeypatch):
    """x0 from the hooks equals x_t - sigma * (the velocity the scheduler received at step 2)."""
    received = []
    original_step = pipe.scheduler.step

    def spy(model_output, timestep, sample, **kwargs):
        received.append((model_output.clone(), sample.clone()))
        return original_step(model_output, timestep, sample, **kwargs)

    monkeypatch.setattr(pipe.scheduler, "step", spy)
    run(pipe, photo, preview="full")
    velocity, sample = received[2]
    sigma = float(pipe.scheduler.sigmas[2])
    monkeypatch.undo()

    with condition_area(pipe, CFG.condition_area), hidden_state_tap(
            pipe, TAP.block, 2, passes=2, stop="step", keep_velocity=True) as recorder:
        pipe(image=photo, prompt=PROMPT, negative_prompt=" ", true_cfg_scale=4.0, height=64, width=64,
             num_inference_steps=8, generator=torch.Generator().manual_seed(0), output_type="latent")
    assert recorder.forwards == 6
    torch.testing.assert_close(recorder.x_t, sample.float(), rtol=0, atol=0)
    torch.testing.assert_close(x0_estimate(recorder, 4.0), sample - sigma * velocity, rtol=1e-5, atol=1e-5)


def test_mm_token_type_ids_reach_the_text_encoder(pipe, photo):
    calls = []
    handle = pipe.text_encoder.register_forward_pre_hook(
        lambda m, a, k: calls.append(dict(k)), with_kwargs=True)
    try:
        run(pipe, photo, preview="none")
    finally:
        handle.remove()
    assert len(calls) == 2  # prompt and negative prompt
    for kwargs in calls:
        types = kwargs.get("mm_token_type_ids")
        assert types is not None and types.shape == kwargs["input_ids"].shape
        assert int((types == 1).sum()) > 0  # the image tokens are marked


def test_prompt_embeds_fix(pipe, photo):
    """Same template/drop/padding as diffusers; only the 3-D MRoPE positions (image present) change the values."""
    image = [pipe.image_processor.resize(photo, 56, 56)]
    ours, our_mask = pipe._get_qwen_prompt_embeds("a zip pocket", image=image)
    stock, stock_mask = QwenImageEditPlusPipeline._get_qwen_prompt_embeds(pipe, "a zip pocket", image=image)
    assert ours.shape == stock.shape
    torch.testing.assert_close(our_mask, stock_mask)
    assert (ours - stock).abs().max() > 1e-6
    ours_text, our_text_mask = pipe._get_qwen_prompt_embeds(["text only", "a longer text only prompt"])
    stock_text, stock_text_mask = QwenImageEditPlusPipeline._get_qwen_prompt_embeds(
        pipe, ["text only", "a longer text only prompt"])
    torch.testing.assert_close(ours_text, stock_text, rtol=0, atol=0)
    torch.testing.assert_close(our_text_mask, stock_text_mask, rtol=0, atol=0)
    assert our_text_mask[0].sum() < our_text_mask[1].sum()  # padding exercised


def test_tokens_all_stacks_condition_tokens(pipe, photo):
    target = run(pipe, photo, preview="none")
    every = run(pipe, photo, tap=TapConfig(block=1, step_frac=0.25, tokens="all"), preview="none")
    assert every.hidden.shape == (1, 16, 8, TINY_EDITOR_HIDDEN)  # 8x8 target rows, then 8x8 condition rows
    assert every.grid == (16, 8)
    torch.testing.assert_close(every.hidden[:, :8], target.hidden, rtol=0, atol=0)


def test_bad_block_names_the_block_count(pipe, photo):
    with pytest.raises(ConfigError, match="has 2 blocks"):
        run(pipe, photo, tap=TapConfig(block=2))
    # nothing left hooked: a later run still counts from zero
    assert run(pipe, photo, preview="none").forwards == 5


def test_condition_area_is_restored(pipe, photo):
    saved = (plus_module.VAE_IMAGE_SIZE, plus_module.CONDITION_IMAGE_SIZE)
    seen = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda m, a, k: seen.append(k["img_shapes"][0]), with_kwargs=True)
    try:
        run(pipe, photo, preview="none")
        with pytest.raises(ConfigError):
            run(pipe, photo, tap=TapConfig(block=7))
    finally:
        handle.remove()
    assert seen[0][1] == (1, 8, 8)  # condition image 64x64, not ~1 MP
    assert (plus_module.VAE_IMAGE_SIZE, plus_module.CONDITION_IMAGE_SIZE) == saved


def test_edit_pipeline_variant(editor_dir, photo):
    cfg = EditorConfig(**{**CFG.__dict__, "pipeline": "edit"})
    original = edit_module.calculate_dimensions
    pipe = load_editor(editor_dir, cfg, CPU)
    assert type(pipe).__name__ == "Know3dQwenImageEditPipeline"
    tap = run(pipe, photo, cfg=cfg, preview="x0")
    assert tap.hidden.shape == (1, 8, 8, TINY_EDITOR_HIDDEN) and tap.forwards == 6
    assert edit_module.calculate_dimensions is original


def test_missing_editor_and_lora(tmp_path, editor_dir):
    with pytest.raises(ModelMissingError):
        load_editor(tmp_path / "nowhere", CFG, CPU)
    try:
        import peft  # noqa: F401
    except ImportError:
        cfg = EditorConfig(**{**CFG.__dict__, "lora": str(tmp_path / "lora.safetensors")})
        with pytest.raises(BackendUnavailable, match="peft"):
            load_editor(editor_dir, cfg, CPU)
