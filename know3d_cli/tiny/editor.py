"""Tiny random Qwen-Image-Edit-2511 as a diffusers `save_pretrained` folder (`model_index.json` + components).

Transformer and VAE follow diffusers' own pipeline-test configs; the transformer sets `zero_cond_t` like 2511.
The scheduler is the **released** config, so the dynamic shift (`mu`) and `shift_terminal` are exercised. The text
encoder and processor are the tiny offline Qwen2.5-VL of `tiny/mllm.py`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .marker import clear, is_complete, mark_complete
from .mllm import TINY_QWEN_VL_HIDDEN, tiny_qwen_processor, tiny_qwen_tokenizer, tiny_qwen_vl

logger = logging.getLogger(__name__)

TINY_EDITOR_HIDDEN = 48  # transformer inner dim (3 heads x 16): channels of the tapped hidden states

# scheduler/scheduler_config.json of Qwen/Qwen-Image-Edit(-2509, -2511)
RELEASED_SCHEDULER_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "invert_sigmas": False,
    "max_image_seq_len": 8192,
    "max_shift": 0.9,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.02,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}


def tiny_editor_components(seed: int = 0) -> dict:
    """The six pipeline components (random weights, deterministic in `seed`)."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=3,
        joint_attention_dim=TINY_QWEN_VL_HIDDEN, guidance_embeds=False, axes_dims_rope=(8, 4, 4), zero_cond_t=True,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLQwenImage(
        base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    )
    tokenizer = tiny_qwen_tokenizer()
    return {
        "transformer": transformer.eval(),
        "vae": vae.eval(),
        "scheduler": FlowMatchEulerDiscreteScheduler.from_config(RELEASED_SCHEDULER_CONFIG),
        "text_encoder": tiny_qwen_vl(tokenizer, seed + 2),
        "tokenizer": tokenizer,
        "processor": tiny_qwen_processor(tokenizer),
    }


def write_tiny_editor(path: Path, seed: int = 0) -> Path:
    """Write the tiny editor folder (as `Qwen/Qwen-Image-Edit-2511`: `QwenImageEditPlusPipeline`) to `path`.

    Deterministic in `seed`; returns at once if already written.
    """
    from diffusers import QwenImageEditPlusPipeline

    path = Path(path)
    if is_complete(path, "editor", seed):
        return path
    clear(path)
    QwenImageEditPlusPipeline(**tiny_editor_components(seed)).save_pretrained(path)
    mark_complete(path, "editor", seed)
    logger.debug("wrote tiny editor to %s", path)
    return path


__all__ = ["RELEASED_SCHEDULER_CONFIG", "TINY_EDITOR_HIDDEN", "tiny_editor_components", "write_tiny_editor"]
