"""Mask choice: the image's alpha, the model-free threshold remover, and the BiRefNet wrapper."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from know3d_cli.config import PreprocessConfig
from know3d_cli.errors import InputError, ModelMissingError
from know3d_cli.preprocess import background as bg
from know3d_cli.preprocess import remove_background, threshold_alpha


def _scene(height=200, width=240, noise=0.0, seed=0):
    """A red ellipse plus a green square touching it, on a light grey backdrop; returns (rgb uint8, object mask)."""
    yy, xx = np.mgrid[:height, :width]
    ellipse = ((xx - 110) / 70.0) ** 2 + ((yy - 105) / 60.0) ** 2 < 1
    square = (xx >= 150) & (xx < 200) & (yy >= 120) & (yy < 170)
    mask = ellipse | square
    rgb = np.empty((height, width, 3), np.float64)
    rgb[:] = (225, 225, 220)
    rgb[ellipse] = (190, 40, 40)
    rgb[square] = (60, 160, 70)
    if noise:
        rgb += np.random.default_rng(seed).normal(0.0, noise * 255, rgb.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_alpha_is_used_when_present():
    arr = np.zeros((16, 16, 4), np.uint8)
    arr[4:12, 4:12] = (50, 60, 70, 255)
    image = Image.fromarray(arr, "RGBA")
    for background in ("auto", "alpha", "threshold"):
        out, source = remove_background(image, PreprocessConfig(background=background))
        assert source == "alpha"
        assert np.array_equal(np.asarray(out), arr)


def test_opaque_alpha_falls_back_to_threshold():
    rgb, mask = _scene()
    image = Image.fromarray(rgb).convert("RGBA")  # alpha channel present but all 255
    out, source = remove_background(image, PreprocessConfig())
    assert source == "threshold" and out.mode == "RGBA"
    assert _iou(np.asarray(out)[:, :, 3] > 127, mask) > 0.95


def test_alpha_mode_without_alpha_is_input_error():
    rgb, _ = _scene(64, 64)
    with pytest.raises(InputError, match="no transparency"):
        remove_background(Image.fromarray(rgb), PreprocessConfig(background="alpha"), name="photo.jpg")


def test_threshold_recovers_object():
    rgb, mask = _scene()
    alpha = threshold_alpha(rgb, 0.08)
    assert alpha.dtype == np.uint8 and alpha.shape == mask.shape
    assert _iou(alpha > 127, mask) > 0.95
    assert alpha[0, 0] == 0 and alpha[105, 110] == 255
    # The colour is kept; only alpha is added.
    out, _ = remove_background(Image.fromarray(rgb), PreprocessConfig(background="threshold"))
    assert np.array_equal(np.asarray(out)[:, :, :3], rgb)


def test_threshold_tolerates_noisy_background():
    rgb, mask = _scene(noise=0.03, seed=1)  # sigma of about 8 grey levels per channel
    alpha = threshold_alpha(rgb, 0.08)
    found = alpha > 127
    assert _iou(found, mask) > 0.95
    far = ~mask  # background pixels well away from the object stay clear (no specks)
    far[60:180, 20:220] = False
    assert not found[far].any()


def test_threshold_tolerance_matters():
    # Object only 0.05 away from the background: kept at tolerance 0.02, swallowed at 0.10.
    rgb = np.full((60, 60, 3), 128, np.uint8)
    rgb[20:40, 20:40] = 128 + 13
    assert (threshold_alpha(rgb, 0.02) > 127).sum() == pytest.approx(400, abs=20)
    assert not (threshold_alpha(rgb, 0.10) > 127).any()


def test_threshold_object_touching_border():
    rgb, mask = _scene()
    rgb, mask = rgb[:, 60:], mask[:, 60:]  # the ellipse now runs off the left edge
    assert _iou(threshold_alpha(rgb, 0.08) > 127, mask) > 0.95


def test_birefnet_never_loaded_by_default(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("BiRefNet must not be loaded unless background=birefnet")

    monkeypatch.setattr(bg, "BiRefNetMasker", refuse)
    rgb, _ = _scene(64, 64)
    _, source = remove_background(Image.fromarray(rgb), PreprocessConfig(), birefnet_path=None)
    assert source == "threshold"


def test_birefnet_missing_dir(tmp_path):
    rgb, _ = _scene(32, 32)
    cfg = PreprocessConfig(background="birefnet")
    with pytest.raises(ModelMissingError, match="BiRefNet"):
        remove_background(Image.fromarray(rgb), cfg, birefnet_path=tmp_path / "absent")
    with pytest.raises(ModelMissingError, match="know3d models pull birefnet"):
        remove_background(Image.fromarray(rgb), cfg)


def test_birefnet_input_and_mask_conversion():
    image = Image.new("RGB", (30, 20), (255, 0, 128))
    x = bg.birefnet_input(image)
    assert x.shape == (1, 3, 1024, 1024) and x.dtype == torch.float32
    expected = (np.array([1.0, 0.0, 128 / 255]) - bg.IMAGENET_MEAN) / bg.IMAGENET_STD
    assert torch.allclose(x[0, :, 500, 500], torch.tensor(expected, dtype=torch.float32), atol=1e-5)
    logits = torch.full((1, 1, 1024, 1024), -20.0)
    logits[..., :, 512:] = 20.0  # right half is object
    mask = bg.birefnet_mask(logits, (30, 20))
    assert mask.mode == "L" and mask.size == (30, 20)
    arr = np.asarray(mask)
    assert arr[:, :13].max() == 0 and arr[:, 17:].min() >= 254


_TINY_SEG = '''
import torch
from transformers import PretrainedConfig, PreTrainedModel


class TinySegConfig(PretrainedConfig):
    model_type = "tinyseg"


class TinySeg(PreTrainedModel):
    """Stands in for BiRefNet: a list of logit maps, the last one the finest; object = brighter red than blue."""

    config_class = TinySegConfig

    def __init__(self, config):
        super().__init__(config)
        self.head = torch.nn.Conv2d(3, 1, 1)
        POST_INIT

    def forward(self, x):
        return [self.head(x)[:, :, ::2, ::2], self.head(x)]
'''


def _tiny_segmenter(model_dir, post_init: bool = True):
    """A remote-code segmentation model in BiRefNet's on-disk layout whose object is "redder than blue"."""
    model_dir.mkdir()
    code = textwrap.dedent(_TINY_SEG).replace("POST_INIT", "self.post_init()" if post_init else "pass")
    (model_dir / "tinyseg.py").write_text(code)
    (model_dir / "config.json").write_text(json.dumps({
        "model_type": "tinyseg",
        "architectures": ["TinySeg"],
        "auto_map": {"AutoConfig": "tinyseg.TinySegConfig", "AutoModelForImageSegmentation": "tinyseg.TinySeg"},
    }))
    from safetensors.torch import save_file

    # Normalised red minus blue, scaled: red pixels get large positive logits, blue ones negative.
    weight = torch.tensor([[[[20.0]], [[0.0]], [[-20.0]]]])
    save_file({"head.weight": weight, "head.bias": torch.zeros(1)}, str(model_dir / "model.safetensors"))
    return model_dir


@pytest.mark.parametrize("post_init", [True, False], ids=["transformers5-ready", "pre-v5-remote-code"])
def test_birefnet_loads_remote_code_dir(tmp_path, post_init):
    # Like the hub's BiRefNet code, the pre-v5 variant never calls post_init(); transformers 5's
    # from_pretrained then fails and the masker builds the class and loads the weights itself.
    model_dir = _tiny_segmenter(tmp_path / f"tinyseg_{'v5' if post_init else 'pre_v5'}", post_init)  # distinct
    arr = np.zeros((40, 50, 3), np.uint8)
    arr[:] = (0, 0, 255)
    arr[10:30, 15:35] = (255, 0, 0)
    masker = bg.BiRefNetMasker(model_dir, device="cpu")
    out, source = remove_background(Image.fromarray(arr), PreprocessConfig(background="birefnet"), birefnet=masker)
    assert source == "birefnet"
    alpha = np.asarray(out)[:, :, 3]
    assert alpha[20, 25] > 250 and alpha[2, 2] < 5
    assert _iou(alpha > 127, arr[:, :, 0] > 127) > 0.9


def test_auto_uses_birefnet_when_its_weights_are_on_disk(tmp_path, tiny_root):
    from know3d_cli.config import load_config
    from know3d_cli.pipeline import Know3dPipeline

    arr = np.zeros((64, 64, 3), np.uint8)
    arr[:] = (0, 0, 255)
    arr[16:48, 20:44] = (255, 0, 0)
    Image.fromarray(arr).save(tmp_path / "red.png")
    tiny = ["preset=tiny", f"models.tiny_root={tiny_root}", "mode=trellis", "models.cache_dir=" + str(tmp_path / "hub")]
    without = Know3dPipeline(load_config(tiny))
    assert without.prepare(tmp_path / "red.png").mask_source == "threshold"  # not pulled: the threshold mask
    model_dir = _tiny_segmenter(tmp_path / "tinyseg_auto")
    pipeline = Know3dPipeline(load_config([*tiny, f"models.birefnet.path={model_dir}"]))
    prepared = pipeline.prepare(tmp_path / "red.png")
    assert prepared.mask_source == "birefnet" and prepared.mask_warnings == ()
    alpha = np.asarray(prepared.rgba)[..., 3]
    assert alpha.max() > 250 and alpha.min() < 5
