"""DINOv3 conditioning for TRELLIS.2 on the tiny random DINOv3 (4 registers, patch 16)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from know3d_cli.errors import InputError, ModelMissingError  # noqa: E402
from know3d_cli.tiny.dinov3 import TINY_DINOV3_HIDDEN  # noqa: E402
from know3d_cli.trellis2.conditioning import DinoV3Conditioner, dinov3_pixels  # noqa: E402


@pytest.fixture(scope="module")
def conditioner(tiny_root):
    return DinoV3Conditioner(tiny_root / "dinov3", "cpu", torch.float32)


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(3)
    noise = (torch.rand(50, 70, 3, generator=gen) * 255).to(torch.uint8).numpy()
    return [Image.fromarray(noise, "RGB"), Image.new("RGB", (40, 40), (250, 120, 0))]


@pytest.mark.parametrize("resolution", [32, 64])
def test_token_count(conditioner, images, resolution):
    cond = conditioner.encode(images, resolution)
    assert cond.shape == (2, 1 + 4 + (resolution // 16) ** 2, TINY_DINOV3_HIDDEN)
    assert cond.shape[1] == conditioner.num_tokens(resolution)
    assert cond.dtype == torch.float32


def test_matches_a_manual_layer_loop(conditioner, images):
    """embeddings -> every layer with RoPE -> no final norm -> parameter-free LayerNorm."""
    model = conditioner.model
    pixels = dinov3_pixels(images, 64)
    with torch.no_grad():
        hidden = model.embeddings(pixels)
        rope = model.rope_embeddings(pixels)
        for layer in model.model.layer:
            hidden = layer(hidden, position_embeddings=rope)
        expected = F.layer_norm(hidden, (hidden.shape[-1],), eps=1e-5)
        with_final_norm = model(pixel_values=pixels).last_hidden_state
    cond = conditioner.encode(images, 64)
    torch.testing.assert_close(cond, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cond, with_final_norm, atol=1e-3)  # the final (affine) norm is skipped
    # parameter-free LN: zero mean, unit variance per token
    torch.testing.assert_close(cond.mean(-1), torch.zeros(cond.shape[:2]), rtol=0, atol=1e-5)


def test_preprocessing(images):
    pixels = dinov3_pixels(images[1:], 32)
    assert pixels.shape == (1, 3, 32, 32)
    expected = (torch.tensor([250, 120, 0]) / 255.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225])
    torch.testing.assert_close(pixels[0, :, 5, 5], expected.float(), rtol=1e-5, atol=1e-5)


def test_rgba_and_batch_independence(conditioner, images):
    alone = conditioner.encode(images[:1], 32)
    batch = conditioner.encode(images, 32)
    torch.testing.assert_close(batch[:1], alone, rtol=1e-5, atol=1e-5)
    rgba = images[0].convert("RGBA")
    torch.testing.assert_close(conditioner.encode([rgba], 32), alone, rtol=0, atol=0)


def test_negative_is_zeros(conditioner, images):
    cond = conditioner.encode(images[:1], 32)
    neg = conditioner.negative(cond)
    assert neg.shape == cond.shape and neg.dtype == cond.dtype and not neg.any()


def test_pinned_dtype(tiny_root, images):
    bf16 = DinoV3Conditioner(tiny_root / "dinov3", "cpu", torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    assert bf16.encode(images[:1], 32).dtype == torch.bfloat16


def test_errors(conditioner, images, tmp_path):
    with pytest.raises(InputError):
        conditioner.encode(images, 40)
    with pytest.raises(InputError):
        conditioner.encode([], 32)
    with pytest.raises(ModelMissingError):
        DinoV3Conditioner(tmp_path)
