"""`imagine_back`: run the editor on the front view just far enough to tap its hidden states.

Cost with the default tap (step round(0.25 * 40) = 10, true CFG): 22 transformer forwards with the x0 preview
(steps 0-10, two passes each), 21 without a preview (the uncond pass of step 10 is skipped), 80 for the full run.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from PIL import Image

from ..config import EditorConfig, Preview, TapConfig
from ..errors import ConfigError, GenerationError
from .pipeline import EditorPipeline, condition_area
from .tap import EditorTap, TapRecorder, hidden_state_tap, tap_step_index

logger = logging.getLogger(__name__)


def imagine_back(
    pipe: EditorPipeline,
    image: Image.Image,
    prompt: str,
    cfg: EditorConfig,
    tap: TapConfig,
    preview: Preview = Preview.x0,
    generator: torch.Generator | None = None,
    need_full_image: bool = False,
    on_step: Callable[[int, int], None] | None = None,
) -> EditorTap:
    """Edit `image` towards its back view with `prompt` and tap the MMDiT hidden states on the way.

    Args:
        pipe: pipeline from `load_editor`.
        image: front view, RGB (premultiplied crop on black).
        prompt: the exact editor instruction (`BackViewPrompt.instruction`).
        cfg: editor settings (steps, true CFG, output side, condition area).
        tap: which block, step fraction and tokens to keep.
        preview: "x0" decodes the x0 estimate at the tap step (no extra transformer calls); "full" finishes the
            schedule and returns the final image; "none" stops right after the tap.
        generator: source of the initial noise.
        need_full_image: finish the schedule whatever `preview` says (multiview mode needs the back view).
        on_step: called as `on_step(n, N)` after each denoising step that runs (progress display); N counts the
            steps up to the tap when the run stops there.

    Returns:
        The tap; `preview` holds an RGB image of side `cfg.resolution` (floored to the pipeline's multiple) or None.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    multiple = pipe.vae_scale_factor * 2
    side = cfg.resolution // multiple * multiple
    if side < multiple:
        raise ConfigError(f"invalid value {cfg.resolution} for editor.resolution; expected at least {multiple}")
    if side != cfg.resolution:
        logger.info("editor.resolution %d floored to %d (a multiple of %d)", cfg.resolution, side, multiple)

    guided = cfg.true_cfg_scale > 1 and cfg.negative_prompt is not None
    finish = preview == Preview.full or need_full_image
    x0_preview = preview == Preview.x0 and not finish
    step = tap_step_index(tap.step_frac, cfg.steps)
    stop = None if finish else ("step" if x0_preview else "block")
    steps_run = cfg.steps if finish else step + 1

    def step_done(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        on_step(index + 1, steps_run)
        return tensors

    with torch.no_grad(), condition_area(pipe, cfg.condition_area), hidden_state_tap(
        pipe, tap.block, step, passes=2 if guided else 1, tokens=tap.tokens, stop=stop, keep_velocity=x0_preview
    ) as recorder:
        out = pipe(
            image=image,
            prompt=prompt,
            negative_prompt=cfg.negative_prompt if guided else None,
            true_cfg_scale=cfg.true_cfg_scale,
            height=side,
            width=side,
            num_inference_steps=cfg.steps,
            generator=generator,
            output_type="pil" if finish else "latent",
            callback_on_step_end=step_done if on_step is not None else None,
        )
    if recorder.hidden is None:
        raise GenerationError(f"the editor never reached tap step {step} of {cfg.steps}")

    result = None
    if finish:
        result = out.images[0]
    elif x0_preview:
        with torch.no_grad():
            result = decode_packed(pipe, x0_estimate(recorder, cfg.true_cfg_scale), side)
    logger.info("editor tap: block %d, step %d/%d (sigma %.3f), grid %s, %d transformer forwards",
                tap.block, step, cfg.steps, recorder.sigma, recorder.grid, recorder.forwards)
    return EditorTap(
        hidden=recorder.hidden,
        step_index=step,
        timestep=recorder.timestep,
        sigma=recorder.sigma,
        grid=recorder.grid,
        forwards=recorder.forwards,
        preview=result,
    )


def true_cfg_velocity(cond: torch.Tensor, uncond: torch.Tensor | None, scale: float) -> torch.Tensor:
    """True CFG as Qwen-Image-Edit applies it: `uncond + scale (cond - uncond)`, then each token rescaled to the
    norm of its cond prediction. cond, uncond: (B, N, D) -> (B, N, D)."""
    if uncond is None:
        return cond
    combined = uncond + scale * (cond - uncond)
    return combined * (cond.norm(dim=-1, keepdim=True) / combined.norm(dim=-1, keepdim=True))


def x0_estimate(recorder: TapRecorder, scale: float) -> torch.Tensor:
    """Clean-latent estimate at the tap step, x0 = x_t - sigma v (rectified flow: v = noise - x0).

    Returns:
        (B, h_t * w_t, 4 z) fp32 packed latents.
    """
    cond = recorder.velocities[0]
    uncond = recorder.velocities[1] if len(recorder.velocities) > 1 else None
    return recorder.x_t - recorder.sigma * true_cfg_velocity(cond, uncond, scale)


def decode_packed(pipe: EditorPipeline, packed: torch.Tensor, side: int) -> Image.Image:
    """Packed normalised latents (1, N, 4 z) of a `side` x `side` image -> RGB image through the VAE."""
    vae = pipe.vae
    latents = pipe._unpack_latents(packed, side, side, pipe.vae_scale_factor)  # (B, z, 1, h, w)
    mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)
    latents = latents.float() * std.to(latents.device) + mean.to(latents.device)
    latents = latents.to(device=pipe._execution_device, dtype=vae.dtype)
    pixels = vae.decode(latents, return_dict=False)[0][:, :, 0]  # (B, 3, H, W) in [-1, 1]
    image = pipe.image_processor.postprocess(pixels, output_type="pil")[0]
    pipe.maybe_free_model_hooks()
    return image


__all__ = ["decode_packed", "imagine_back", "true_cfg_velocity", "x0_estimate"]
