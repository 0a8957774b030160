"""Configuration schema of `know3d train` (the `train` node), composed with the rest by `config.load_config`.

Kept apart from `config.py` so the generation schema stays readable; the YAML defaults and one-line descriptions
live in `configs/config.yaml` (`train:`) and the per-stage recipes in `configs/train/<stage>.yaml`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

from .choices import Choice
from .errors import ConfigError

logger = logging.getLogger(__name__)


class TrainStage(Choice):
    """Which TRELLIS.2 flow is trained (`train.stage`)."""

    ss = "ss"  # sparse-structure flow, 8 x 16^3 dense latent, DINOv3 at 512
    shape_512 = "shape_512"  # shape flow on the 32^3 latent grid, DINOv3 at 512
    shape_1024 = "shape_1024"  # shape flow on the 64^3 latent grid, DINOv3 at 1024


class Trainable(Choice):
    """What the optimiser updates (`train.trainable`); each kind has a builder in `train/targets.py`."""

    adapter = "adapter"  # a Know3D adapter; the released flow is frozen
    flow = "flow"  # the whole flow: fine-tune the released weights, or from scratch
    ss_vae = "ss_vae"  # the sparse-structure VAE (encoder + decoder) on the samples' 64^3 occupancy (train.stage=ss)


class SsLatentSource(Choice):
    """Where the SS stage's target latent comes from (`train.ss_latents`)."""

    dataset = "dataset"  # ss_latent as `know3d data build` stored it
    encoder = "encoder"  # models.ss_encoder's posterior mean of the sample's occupancy, computed on load


class SsVaeLoss(Choice):
    """Reconstruction term of the SS VAE objective (upstream's `loss_type`)."""

    bce = "bce"  # binary cross-entropy of the occupancy logits
    dice = "dice"  # 1 - soft Dice of sigmoid(logits)
    l1 = "l1"  # L1 of sigmoid(logits)


class TimeSchedule(Choice):
    logit_normal = "logit_normal"  # t = sigmoid(N(mean, std))
    uniform = "uniform"  # t ~ U(0, 1)


class LrDecay(Choice):
    constant = "constant"
    cosine = "cosine"
    linear = "linear"


class MixedPrecision(Choice):
    auto = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    bf16 = "bf16"  # bf16 autocast, fp32 master weights
    fp32 = "fp32"


class Distributed(Choice):
    ddp = "ddp"
    fsdp = "fsdp"


class LoraWeighting(Choice):
    """Timestep density and loss weight of the editor LoRA objective (diffusers' `weighting_scheme`)."""

    none = "none"
    logit_normal = "logit_normal"
    mode = "mode"
    sigma_sqrt = "sigma_sqrt"
    cosmap = "cosmap"


@dataclass
class TimeScheduleConfig:
    name: TimeSchedule = TimeSchedule.logit_normal  # logit_normal | uniform
    mean: float = 1.0  # logit-normal mean
    std: float = 1.0  # logit-normal std


@dataclass
class OptimizerConfig:
    lr: float = 1e-4  # AdamW peak learning rate
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.01  # AdamW decoupled weight decay


@dataclass
class LrScheduleConfig:
    warmup_steps: int = 0  # linear warm-up from 0 to optimizer.lr
    decay: LrDecay = LrDecay.constant  # constant | cosine | linear after the warm-up, to min_lr_ratio * lr at the end
    min_lr_ratio: float = 0.0  # final learning rate as a fraction of optimizer.lr (cosine, linear)


@dataclass
class GradClipConfig:
    max_norm: Optional[float] = 1.0  # clip the global gradient norm to this; null = no clipping
    percentile: Optional[float] = 95.0  # adaptive: clip at this percentile of recent norms (<= max_norm); null = fixed
    window: int = 1000  # recent norms the adaptive threshold is computed from (once the window is full)


@dataclass
class EmaConfig:
    rate: float = 0.9999  # EMA decay of the trained weights; 0 = no EMA
    warmup: bool = True  # use min(rate, (1 + n) / (10 + n)) at update n, so short runs get a usable EMA


@dataclass
class NewAdapterConfig:
    proj_channels: int = 1024  # channels of the projected editor tokens
    blocks: Optional[list[int]] = None  # flow blocks that get an ext_attn; null = every block
    pool: int = 1  # 1 | 2 (2x2 average pooling of the editor token grid)
    num_heads: Optional[int] = None  # heads of the extra attention; null = those of the flow
    qk_rms_norm: bool = True  # RMS-normalise the extra attention's q/k
    init: Optional[str] = None  # adapter folder to start from; null = a fresh, zero-initialised adapter


@dataclass
class ValidationConfig:
    every: int = 1000  # steps between validation previews (PNG under <output_dir>/validation); 0 = never
    samples: int = 4  # dataset samples previewed (the first ones of the index)
    steps: Optional[int] = None  # sampler steps; null = pipeline.json (other sampler keys: trellis2.ss / shape)


@dataclass
class SsVaeConfig:
    loss: SsVaeLoss = SsVaeLoss.bce  # bce | dice | l1 (upstream's default: bce)
    lambda_kl: float = 1e-6  # weight of the KL term 0.5 mean(mu^2 + var - log var - 1) (upstream's default)


@dataclass
class EditorLoraConfig:
    output: str = "outputs/editor_lora"  # folder for pytorch_lora_weights.safetensors (what editor.lora loads)
    steps: int = 1000  # optimiser steps
    batch_size: int = 1  # front/back pairs per step (accumulated one at a time)
    lr: float = 1e-4  # AdamW learning rate
    rank: int = 16  # LoRA rank
    alpha: float = 16.0  # LoRA alpha
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])  # MMDiT layers
    weighting_scheme: LoraWeighting = LoraWeighting.none  # none | logit_normal | mode | sigma_sqrt | cosmap
    logit_mean: float = 0.0  # logit_normal density mean
    logit_std: float = 1.0  # logit_normal density std
    mode_scale: float = 1.29  # `mode` density scale
    max_grad_norm: float = 1.0  # gradient clipping
    save_every: int = 500  # steps between writes of the LoRA file (also written at the end)


@dataclass
class TrainConfig:
    stage: TrainStage = TrainStage.ss  # ss | shape_512 | shape_1024 (set by the train= group)
    trainable: Trainable = Trainable.adapter  # adapter (released flow frozen) | flow (the whole flow) | ss_vae
    from_scratch: bool = False  # trainable=flow / ss_vae: start from random weights with the released args
    ss_latents: SsLatentSource = SsLatentSource.dataset  # ss stage: dataset | encoder (after training a new SS VAE)
    dataset: Optional[str] = None  # dataset folder written by `know3d data build` (required)
    output_dir: str = "outputs/train"  # checkpoints, metrics.jsonl, TensorBoard logs, validation previews
    steps: int = 10000  # optimiser steps
    batch_size: int = 8  # samples per optimiser step, over all processes and micro-batches
    accumulation: int = 1  # micro-batches per optimiser step (gradient accumulation)
    seed: int = 0  # seeds data order, noise, t and condition dropout
    sigma_min: float = 1e-5  # flow-matching noise floor (TRELLIS.2)
    p_uncond: float = 0.1  # probability of replacing a sample's DINOv3 tokens by zeros (CFG)
    p_uncond_editor: float = 0.1  # probability of replacing a sample's editor tokens by zeros (CFG, independent)
    max_tokens: Optional[int] = None  # shape stages: skip samples with more latent tokens; null = keep all
    t_schedule: TimeScheduleConfig = field(default_factory=TimeScheduleConfig)  # training t distribution
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: LrScheduleConfig = field(default_factory=LrScheduleConfig)
    grad_clip: GradClipConfig = field(default_factory=GradClipConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    adapter: NewAdapterConfig = field(default_factory=NewAdapterConfig)  # architecture of a new adapter
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    mixed_precision: MixedPrecision = MixedPrecision.auto  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    gradient_checkpointing: bool = True  # recompute each flow block in the backward pass
    distributed: Distributed = Distributed.ddp  # ddp | fsdp (multi-process runs under `accelerate launch` / `torchrun`)
    num_workers: int = 0  # data-loading worker processes per training process
    log_every: int = 10  # steps between metric lines
    checkpoint_every: int = 1000  # steps between checkpoints (and one at the end)
    keep_checkpoints: int = 3  # newest checkpoints kept; older ones are deleted
    tensorboard: bool = True  # also write TensorBoard scalars under <output_dir>/tensorboard (needs `tensorboard`)
    editor_lora: EditorLoraConfig = field(default_factory=EditorLoraConfig)  # `know3d train editor-lora`
    ss_vae: SsVaeConfig = field(default_factory=SsVaeConfig)  # train.trainable=ss_vae


def validate_train(cfg: TrainConfig) -> None:
    """Ranges of `train.*` that types alone cannot express (`ConfigError` naming the key); the schema's Enums
    already checked every choice."""
    positive = [("train.steps", cfg.steps), ("train.batch_size", cfg.batch_size),
                ("train.accumulation", cfg.accumulation), ("train.log_every", cfg.log_every),
                ("train.checkpoint_every", cfg.checkpoint_every), ("train.keep_checkpoints", cfg.keep_checkpoints),
                ("train.t_schedule.std", cfg.t_schedule.std),
                ("train.grad_clip.window", cfg.grad_clip.window), ("train.adapter.proj_channels",
                                                                   cfg.adapter.proj_channels),
                ("train.editor_lora.steps", cfg.editor_lora.steps),
                ("train.editor_lora.batch_size", cfg.editor_lora.batch_size),
                ("train.editor_lora.lr", cfg.editor_lora.lr), ("train.editor_lora.rank", cfg.editor_lora.rank),
                ("train.editor_lora.save_every", cfg.editor_lora.save_every)]
    for key, value in positive:
        if not value > 0:
            raise ConfigError(f"invalid value {value!r} for {key}; expected a number > 0")
    non_negative = [("train.seed", cfg.seed), ("train.lr_schedule.warmup_steps", cfg.lr_schedule.warmup_steps),
                    ("train.validation.every", cfg.validation.every), ("train.num_workers", cfg.num_workers),
                    ("train.optimizer.weight_decay", cfg.optimizer.weight_decay), ("train.optimizer.lr", cfg.optimizer.lr)]
    for key, value in non_negative:
        if value < 0:
            raise ConfigError(f"invalid value {value!r} for {key}; expected a number >= 0")
    fractions = [("train.p_uncond", cfg.p_uncond), ("train.p_uncond_editor", cfg.p_uncond_editor),
                 ("train.ema.rate", cfg.ema.rate), ("train.lr_schedule.min_lr_ratio", cfg.lr_schedule.min_lr_ratio)]
    for key, value in fractions:
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"invalid value {value!r} for {key}; expected a number in [0, 1]")
    if not 0.0 <= cfg.sigma_min < 1.0:
        raise ConfigError(f"invalid value {cfg.sigma_min!r} for train.sigma_min; expected a number in [0, 1)")
    if len(cfg.optimizer.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.optimizer.betas):
        raise ConfigError(f"invalid value {cfg.optimizer.betas!r} for train.optimizer.betas; expected [b1, b2] in [0, 1)")
    if cfg.batch_size % cfg.accumulation:
        raise ConfigError(f"train.batch_size={cfg.batch_size} is not divisible by train.accumulation="
                          f"{cfg.accumulation}")
    if cfg.grad_clip.max_norm is not None and cfg.grad_clip.max_norm <= 0:
        raise ConfigError(f"invalid value {cfg.grad_clip.max_norm!r} for train.grad_clip.max_norm; expected > 0 or null")
    if cfg.grad_clip.percentile is not None and not 0.0 < cfg.grad_clip.percentile <= 100.0:
        raise ConfigError(f"invalid value {cfg.grad_clip.percentile!r} for train.grad_clip.percentile; "
                          "expected (0, 100] or null")
    if cfg.adapter.pool not in (1, 2):
        raise ConfigError(f"invalid value {cfg.adapter.pool!r} for train.adapter.pool; expected 1 or 2")
    if cfg.adapter.proj_channels % 4:
        raise ConfigError(f"invalid value {cfg.adapter.proj_channels} for train.adapter.proj_channels; expected a "
                          "multiple of 4 (2-D sin-cos position embedding)")
    if cfg.validation.steps is not None and cfg.validation.steps < 1:
        raise ConfigError(f"invalid value {cfg.validation.steps!r} for train.validation.steps; expected >= 1 or null")
    if cfg.max_tokens is not None and cfg.max_tokens < 1:
        raise ConfigError(f"invalid value {cfg.max_tokens!r} for train.max_tokens; expected >= 1 or null")
    if cfg.from_scratch and cfg.trainable == Trainable.adapter:
        raise ConfigError("train.from_scratch=true needs train.trainable=flow or ss_vae (an adapter always starts "
                          "from zero)")
    if cfg.trainable == Trainable.ss_vae and cfg.stage != TrainStage.ss:
        raise ConfigError(f"train.trainable=ss_vae trains the sparse-structure VAE: it needs train=ss, not "
                          f"train.stage={cfg.stage.value}")
    if cfg.ss_latents == SsLatentSource.encoder and cfg.stage != TrainStage.ss:
        raise ConfigError(f"train.ss_latents=encoder is for the SS stage (train=ss), not train.stage={cfg.stage.value}")
    if cfg.ss_vae.lambda_kl < 0:
        raise ConfigError(f"invalid value {cfg.ss_vae.lambda_kl!r} for train.ss_vae.lambda_kl; expected a number >= 0")
    if cfg.distributed == Distributed.fsdp and cfg.ema.rate > 0:
        raise ConfigError("train.distributed=fsdp keeps no EMA (the weights are sharded); set train.ema.rate=0 or "
                          "use train.distributed=ddp")


__all__ = [
    "Distributed", "EditorLoraConfig", "EmaConfig", "GradClipConfig", "LoraWeighting", "LrDecay", "LrScheduleConfig",
    "MixedPrecision", "NewAdapterConfig", "OptimizerConfig", "SsLatentSource", "SsVaeConfig", "SsVaeLoss",
    "TimeSchedule", "TimeScheduleConfig", "TrainConfig",
    "TrainStage", "Trainable", "ValidationConfig", "validate_train",
]
