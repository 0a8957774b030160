"""Tiny random DINOv3 ViT (patch 16, 4 register tokens, RoPE) in the `save_pretrained` layout of
`facebook/dinov3-vitl16-pretrain-lvd1689m`."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .marker import clear, is_complete, mark_complete

logger = logging.getLogger(__name__)

TINY_DINOV3_HIDDEN = 32  # token channels of the tiny DINOv3 = the tiny TRELLIS.2 flows' cond_channels
TINY_DINOV3_REGISTERS = 4


def tiny_dinov3(seed: int = 0):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    config = DINOv3ViTConfig(
        hidden_size=TINY_DINOV3_HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        patch_size=16, num_register_tokens=TINY_DINOV3_REGISTERS, image_size=64, layerscale_value=1.0,
    )
    torch.manual_seed(seed)
    model = DINOv3ViTModel(config).eval()
    with torch.no_grad():  # the init leaves tokens, layer scales and norm affines constant: randomise them
        for name, param in model.named_parameters():
            if name.endswith(("cls_token", "register_tokens", "lambda1")):
                param.normal_(0.0, 0.5)
            elif ".norm" in f".{name}" and name.endswith("weight"):
                param.normal_(1.0, 0.2)
            elif ".norm" in f".{name}" and name.endswith("bias"):
                param.normal_(0.0, 0.2)
    return model


def write_tiny_dinov3(path: Path, seed: int = 0) -> Path:
    """Write the tiny DINOv3 (`config.json`, `model.safetensors`) to `path`; deterministic, idempotent."""
    path = Path(path)
    if is_complete(path, "dinov3", seed):
        return path
    clear(path)
    tiny_dinov3(seed).save_pretrained(path)
    mark_complete(path, "dinov3", seed)
    logger.debug("wrote tiny dinov3 to %s", path)
    return path


__all__ = ["TINY_DINOV3_HIDDEN", "TINY_DINOV3_REGISTERS", "tiny_dinov3", "write_tiny_dinov3"]
