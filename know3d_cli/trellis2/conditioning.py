"""TRELLIS.2 image conditioning: DINOv3 ViT tokens of the (preprocessed) input image.

Recipe (trellis2.md section 1.4): resize to S x S (LANCZOS) -> /255 -> ImageNet normalisation -> embeddings and all
layers with RoPE -> the last layer's output *without* the model's final norm -> parameter-free LayerNorm (eps 1e-5).
Tokens: CLS, the register tokens, then the (S/16)^2 patches row-major. The unconditional branch is all zeros.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import CheckpointError, InputError, ModelMissingError

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def dinov3_pixels(images: list[Image.Image], resolution: int) -> torch.Tensor:
    """PIL images -> (B, 3, S, S) fp32, resized with LANCZOS and ImageNet-normalised."""
    arrays = [np.asarray(im.convert("RGB").resize((resolution, resolution), Image.LANCZOS), dtype=np.float32)
              for im in images]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0  # (B, 3, S, S)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


class DinoV3Conditioner:
    """DINOv3 feature extractor for TRELLIS.2's image cross-attention.

    Args:
        path: local `DINOv3ViTModel` folder (`config.json` + `model.safetensors`).
        device: where it computes.
        dtype: weight and compute dtype, pinned at load (transformers' default may differ between versions).
    """

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        from transformers import DINOv3ViTModel

        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise ModelMissingError(f"DINOv3 not found: {path / 'config.json'} does not exist")
        try:
            self.model = DINOv3ViTModel.from_pretrained(path, dtype=dtype, local_files_only=True).eval()
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"DINOv3 at {path} does not load as DINOv3ViTModel: {exc}") from exc
        self.model.to(device)
        self.patch_size = int(self.model.config.patch_size)
        self.num_register_tokens = int(self.model.config.num_register_tokens)
        self.hidden_size = int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device: torch.device | str) -> DinoV3Conditioner:
        self.model.to(device)
        return self

    def num_tokens(self, resolution: int) -> int:
        return 1 + self.num_register_tokens + (resolution // self.patch_size) ** 2

    @torch.no_grad()
    def encode(self, images: list[Image.Image], resolution: int) -> torch.Tensor:
        """Condition tokens of `images` at side `resolution` (512 or 1024 for TRELLIS.2).

        Returns:
            (B, 1 + registers + (S/16)^2, hidden) in the model dtype, on the model device.
        """
        if not images:
            raise InputError("DINOv3 conditioning needs at least one image")
        if resolution % self.patch_size:
            raise InputError(f"DINOv3 resolution {resolution} is not a multiple of the patch size {self.patch_size}")
        pixels = dinov3_pixels(images, resolution).to(device=self.device, dtype=self.dtype)
        out = self.model(pixel_values=pixels, output_hidden_states=True)
        tokens = out.hidden_states[-1]  # (B, T, C): last layer, before the model's final norm
        return F.layer_norm(tokens.float(), tokens.shape[-1:], eps=1e-5).to(tokens.dtype)

    @staticmethod
    def negative(cond: torch.Tensor) -> torch.Tensor:
        """Unconditional tokens: all zeros, as TRELLIS.2 was trained (p_uncond 0.1)."""
        return torch.zeros_like(cond)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DinoV3Conditioner", "dinov3_pixels"]
