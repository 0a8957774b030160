"""`know3d train editor-lora`: the paper's back-view fine-tune of Qwen-Image-Edit, as a peft LoRA on its MMDiT.

Each dataset sample gives a pair (front.png -> back.png) and K editor instructions. A training example is encoded
exactly as the editor pipeline encodes an edit at inference (`editor.resolution`, `editor.condition_area`): the
instruction with the front view through Qwen2.5-VL, the front view through the VAE as the condition latents, the back
view through the VAE as the clean target x0. The objective is diffusers' flow matching for Qwen-Image:
sigma from `compute_density_for_timestep_sampling` mapped through the scheduler's training table,
`x_t = (1 - sigma) x0 + sigma eps`, the transformer (target tokens first, then the condition tokens, timestep sigma)
predicts `eps - x0` on the target tokens, MSE weighted by `compute_loss_weighting_for_sd3`.

The LoRA is written with the pipeline's own `save_lora_weights` as `<output>/pytorch_lora_weights.safetensors`,
which `editor.lora` loads. Single process; the file is rewritten every `save_every` steps and at the end (a killed run
keeps the last one; the optimiser state is not kept).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import hub
from ..config import EditorConfig, Know3dConfig
from ..data.views import stored_view
from ..data.writer import BACK_FILE, FRONT_FILE
from ..errors import BackendUnavailable, ConfigError
from ..io import atomic_write, ensure_writable_dir
from ..runtime import resolve_runtime
from ..train_config import MixedPrecision, TrainStage
from .data_order import DataOrder, seed_sequence
from .dataset import IndexEntry, TrainingDataset

logger = logging.getLogger(__name__)

LORA_FILE = "pytorch_lora_weights.safetensors"
_CACHE_LIMIT = 256  # encoded examples kept in memory (text encoder and VAE are frozen)


@dataclass(frozen=True)
class EncodedEdit:
    """One (front, back, instruction) example as the transformer sees it, packed, on the device."""

    prompt_embeds: torch.Tensor  # (1, L, D)
    prompt_mask: torch.Tensor | None  # (1, L) or None when every token is real
    target: torch.Tensor  # (1, n_target, 4 z) packed clean back-view latents x0
    condition: torch.Tensor  # (1, n_cond, 4 z) packed front-view latents
    img_shapes: list[list[tuple[int, int, int]]]  # [[target grid, condition grid]]


@dataclass(frozen=True)
class EditorLoraResult:
    path: Path  # the LoRA file
    steps: int
    losses: list[float]  # training loss of every step


def train_editor_lora(cfg: Know3dConfig, emit: Callable[[dict[str, Any]], None] | None = None,
                      pipe=None) -> EditorLoraResult:
    """Train the LoRA as `cfg.train.editor_lora` says on the pairs of `cfg.train.dataset`.

    Args:
        cfg: the configuration (editor model and settings, dataset, seed, precision).
        emit: receives one metrics record per `train.log_every` steps.
        pipe: an already loaded editor pipeline (tests); None = load `models.editor`.
    """
    tcfg, lcfg = cfg.train, cfg.train.editor_lora
    emit = emit or (lambda record: None)
    if not tcfg.dataset:
        raise ConfigError("train.dataset is required: train.dataset=DIR (front.png / back.png pairs with prompts)")
    try:
        from peft import LoraConfig
        from peft.utils import get_peft_model_state_dict
    except ImportError as exc:
        raise BackendUnavailable("know3d train editor-lora needs `peft`: pip install 'know3d[train]'") from exc
    from diffusers.training_utils import cast_training_params

    pairs = TrainingDataset(tcfg.dataset, TrainStage.ss, need_hdit=False).entries
    runtime = resolve_runtime(cfg.runtime)
    if pipe is None:
        from ..editor import load_editor

        pipe = load_editor(hub.resolve(cfg, "editor").path, replace(cfg.editor, lora=None), runtime)
    pipe.to(runtime.device)
    transformer = pipe.transformer
    for module in (transformer, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    transformer.add_adapter(LoraConfig(r=lcfg.rank, lora_alpha=lcfg.alpha, init_lora_weights="gaussian",
                                       target_modules=list(lcfg.target_modules)))
    cast_training_params(transformer, dtype=torch.float32)  # fp32 master weights for the LoRA
    if tcfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lcfg.lr, betas=tuple(tcfg.optimizer.betas), eps=tcfg.optimizer.eps,
                                  weight_decay=tcfg.optimizer.weight_decay)
    objective = EditFlowMatching.for_pipeline(pipe, lcfg.weighting_scheme, lcfg.logit_mean, lcfg.logit_std,
                                              lcfg.mode_scale)
    out_dir = ensure_writable_dir(Path(lcfg.output).expanduser())
    use_bf16 = runtime.is_cuda and tcfg.mixed_precision != MixedPrecision.fp32
    order = DataOrder(len(pairs), tcfg.seed)
    cache: dict[tuple[int, int], EncodedEdit] = {}
    losses: list[float] = []
    transformer.train()
    start = time.perf_counter()
    for step in range(lcfg.steps):
        total = 0.0
        for slot, index in enumerate(order.indices(step, lcfg.batch_size)):
            generator = torch.Generator().manual_seed(seed_sequence(tcfg.seed, step, slot))
            variant = int(torch.randint(len(pairs[index].prompts), (1,), generator=generator))
            if (index, variant) not in cache:
                if len(cache) >= _CACHE_LIMIT:
                    cache.pop(next(iter(cache)))
                cache[(index, variant)] = encode_edit(pipe, pairs[index], variant, cfg.editor)
            sigma, noise = objective.draw(cache[(index, variant)].target, generator)
            with torch.autocast(runtime.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = objective.loss(transformer, cache[(index, variant)], sigma, noise)
            (loss / lcfg.batch_size).backward()
            total += float(loss.detach()) / lcfg.batch_size
        norm = float(torch.nn.utils.clip_grad_norm_(params, lcfg.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total)
        done = step + 1
        if done % tcfg.log_every == 0 or done == lcfg.steps:
            elapsed = time.perf_counter() - start
            emit({"event": "editor_lora", "step": done, "loss": float(np.mean(losses[-tcfg.log_every:])),
                  "grad_norm": norm, "lr": lcfg.lr, "pairs_per_s": lcfg.batch_size * done / max(elapsed, 1e-9)})
        if done % lcfg.save_every == 0 or done == lcfg.steps:
            path = save_lora(pipe, transformer, get_peft_model_state_dict(transformer), out_dir)
    emit({"event": "editor_lora_done", "step": lcfg.steps, "file": str(path)})
    return EditorLoraResult(path, lcfg.steps, losses)


def save_lora(pipe, transformer, lora_state: dict[str, torch.Tensor], out_dir: Path) -> Path:
    """Write `out_dir/pytorch_lora_weights.safetensors` with the pipeline's LoRA writer, atomically."""
    tmp = Path(tempfile.mkdtemp(prefix=".lora-", dir=out_dir))
    try:
        pipe.save_lora_weights(str(tmp), transformer_lora_layers=lora_state, weight_name=LORA_FILE,
                               transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict())
        atomic_write(out_dir / LORA_FILE, (tmp / LORA_FILE).read_bytes())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / LORA_FILE


@torch.no_grad()
def encode_edit(pipe, entry: IndexEntry, variant: int, editor: EditorConfig) -> EncodedEdit:
    """Encode sample `entry`'s pair with instruction `variant` exactly like `imagine_back` feeds the pipeline."""
    from diffusers import QwenImageEditPlusPipeline
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as edit_module
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as plus_module

    from ..editor.pipeline import condition_area

    front, back = stored_view(entry.dir / FRONT_FILE), stored_view(entry.dir / BACK_FILE)
    device, dtype = pipe._execution_device, pipe.transformer.dtype
    scale = pipe.vae_scale_factor
    side = editor.resolution // (scale * 2) * (scale * 2)
    ratio = front.width / front.height
    with condition_area(pipe, editor.condition_area):
        if isinstance(pipe, QwenImageEditPlusPipeline):
            cond_w, cond_h = plus_module.calculate_dimensions(plus_module.CONDITION_IMAGE_SIZE, ratio)
            vae_w, vae_h = plus_module.calculate_dimensions(plus_module.VAE_IMAGE_SIZE, ratio)
            prompt_image = [pipe.image_processor.resize(front, cond_h, cond_w)]
        else:
            vae_w, vae_h, _ = edit_module.calculate_dimensions(1024 * 1024, ratio)
            prompt_image = pipe.image_processor.resize(front, vae_h, vae_w)
    embeds, mask = pipe.encode_prompt(prompt=[entry.prompts[variant]], image=prompt_image, device=device)
    front_pixels = pipe.image_processor.preprocess(front, vae_h, vae_w).unsqueeze(2).to(device, dtype)
    back_pixels = pipe.image_processor.preprocess(back, side, side).unsqueeze(2).to(device, dtype)
    condition = _packed(pipe, pipe._encode_vae_image(front_pixels, generator=None))
    target = _packed(pipe, pipe._encode_vae_image(back_pixels, generator=None))
    shapes = [[(1, side // scale // 2, side // scale // 2), (1, vae_h // scale // 2, vae_w // scale // 2)]]
    return EncodedEdit(embeds, mask, target.float(), condition, shapes)


def _packed(pipe, latents: torch.Tensor) -> torch.Tensor:
    """(1, z, 1, h, w) VAE latents -> (1, h/2 * w/2, 4 z) transformer tokens."""
    return pipe._pack_latents(latents, latents.shape[0], latents.shape[1], latents.shape[3], latents.shape[4])


@dataclass(frozen=True)
class EditFlowMatching:
    """diffusers' flow-matching objective for Qwen-Image transformers."""

    train_sigmas: torch.Tensor  # (num_train_timesteps,) sigma of each training timestep of the scheduler
    weighting_scheme: str
    logit_mean: float
    logit_std: float
    mode_scale: float

    @classmethod
    def for_pipeline(cls, pipe, weighting_scheme: str, logit_mean: float, logit_std: float,
                     mode_scale: float) -> EditFlowMatching:
        from diffusers import FlowMatchEulerDiscreteScheduler

        scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)  # the untouched training table
        return cls(scheduler.sigmas[: scheduler.config.num_train_timesteps].float(), weighting_scheme, logit_mean,
                   logit_std, mode_scale)

    def draw(self, target: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(1,) sigma and noise shaped like `target`, from `generator`."""
        from diffusers.training_utils import compute_density_for_timestep_sampling

        u = compute_density_for_timestep_sampling(self.weighting_scheme, 1, logit_mean=self.logit_mean,
                                                  logit_std=self.logit_std, mode_scale=self.mode_scale,
                                                  generator=generator)
        index = (u * len(self.train_sigmas)).long().clamp(max=len(self.train_sigmas) - 1)
        noise = torch.randn(target.shape, generator=generator)
        return self.train_sigmas[index], noise

    def loss(self, transformer, example: EncodedEdit, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Weighted MSE between the predicted and the target velocity `eps - x0` on the target tokens."""
        from diffusers.training_utils import compute_loss_weighting_for_sd3

        device = example.target.device
        sigma, noise = sigma.to(device), noise.to(device)
        x_t = (1.0 - sigma) * example.target + sigma * noise
        dtype = transformer.dtype
        pred = transformer(
            hidden_states=torch.cat([x_t, example.condition.float()], dim=1).to(dtype),
            timestep=sigma.to(dtype),
            encoder_hidden_states=example.prompt_embeds,
            encoder_hidden_states_mask=example.prompt_mask,
            img_shapes=example.img_shapes,
            return_dict=False,
        )[0][:, : x_t.shape[1]]
        weight = compute_loss_weighting_for_sd3(self.weighting_scheme, sigma).to(device).float()
        return (weight * (pred.float() - (noise - example.target)) ** 2).mean()


__all__ = ["LORA_FILE", "EditFlowMatching", "EditorLoraResult", "EncodedEdit", "encode_edit", "save_lora",
           "train_editor_lora"]
