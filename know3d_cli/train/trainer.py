"""`know3d train`: the training loop, distributed through Hugging Face Accelerate.

One process, or many under `accelerate launch` / `torchrun` (DDP by default, FSDP as an option): each process
loads its share of every optimiser step's batch (`data_order.py`), the gradients are averaged, and only the main
process writes files and metric lines. Mixed precision is bf16 autocast over fp32 master weights (the trained
parameters and the optimiser state are fp32).

Per step: for each micro-batch, draw t, noise and condition dropout per sample (`batch.py`), predict the velocity,
backpropagate the flow-matching MSE (`flow_matching.py`); then clip the global gradient norm (fixed or adaptive),
step AdamW at the scheduled learning rate, and update the EMA. Every `log_every` steps a metrics line, every
`checkpoint_every` steps a checkpoint (`checkpoint.py`), every `validation.every` steps a preview (`validation.py`).
The sparse-structure VAE (`train.trainable=ss_vae`) runs the same loop on the samples' occupancy grids with its own
inputs (posterior noise) and objective (`ss_vae.py`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Know3dConfig
from ..errors import CheckpointError, ConfigError
from ..io import ensure_writable_dir
from ..runtime import resolve_runtime
from ..train_config import Distributed, LrDecay, MixedPrecision, SsLatentSource, Trainable, TrainStage
from .batch import ModelInputs, collate, draw_inputs
from .checkpoint import (
    TrainingState,
    capture_rng,
    load_training_checkpoint,
    resolve_checkpoint,
    restore_rng,
    save_training_checkpoint,
)
from .data_order import DataOrder, StepBatchSampler
from .dataset import TrainingDataset
from .ema import ExponentialMovingAverage
from .flow_matching import FlowMatching, t_bin_means, training_loss
from .grad_clip import AdaptiveGradClip
from .lr_schedule import lr_factor
from .metrics import MetricsLog
from .models import open_trellis
from .ss_vae import OccupancyDataset, SsVaeInputs, SsVaeObjective, collate_occupancy, draw_vae_inputs
from .targets import TrainTarget, build_target, identity_mismatch
from .validation import ReconstructionPreview, ValidationPreview

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    step: int  # optimiser steps done
    checkpoint: Path | None  # the newest checkpoint (None if no step was run and none existed)


def run_training(cfg: Know3dConfig, resume: str | None = None, emit: Emit | None = None) -> TrainResult:
    """Train as `cfg.train` says, from scratch or from a checkpoint (`resume`: "latest" or a path).

    Raises:
        ConfigError: missing dataset, batch not divisible by the processes, bad adapter settings (exit 2).
        InputError: the dataset is missing or damaged (exit 3).
        CheckpointError / ModelMissingError: unusable checkpoint or model files (exit 3).
    """
    return Trainer(cfg, emit or (lambda record: None)).run(resume)


class Trainer:
    """A training run: models, data, optimiser and state, built from `cfg` on this process.

    `run` is the whole loop; `optimize` is one optimiser step on given micro-batch inputs (tests use it to
    overfit a fixed batch).
    """

    def __init__(self, cfg: Know3dConfig, emit: Emit):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg = cfg
        self.tcfg = tcfg = cfg.train
        if not tcfg.dataset:
            raise ConfigError("train.dataset is required: train.dataset=DIR (a folder written by `know3d data build`)")
        self.stage = TrainStage(tcfg.stage)
        self.kind = Trainable(tcfg.trainable)
        device = resolve_runtime(cfg.runtime).device  # a CUDA request without a GPU is exit 4
        on_cpu = device.type == "cpu"
        if device.type == "cuda" and device.index is not None and "LOCAL_RANK" not in os.environ:
            torch.cuda.set_device(device)  # one process on the requested GPU; launchers assign one per process
        precision = MixedPrecision(tcfg.mixed_precision)
        self.bf16 = precision == MixedPrecision.bf16 or (precision == MixedPrecision.auto and not on_cpu)
        plugins: dict[str, Any] = {}
        if Distributed(tcfg.distributed) == Distributed.fsdp:
            from accelerate.utils import FullyShardedDataParallelPlugin

            plugins["fsdp_plugin"] = FullyShardedDataParallelPlugin(
                use_orig_params=True, auto_wrap_policy="transformer_based_wrap",
                transformer_cls_names_to_wrap=["ModulatedTransformerCrossBlock"])
        self.accelerator = Accelerator(cpu=on_cpu, mixed_precision="bf16" if self.bf16 else "no", **plugins)
        acc = self.accelerator
        self.main = acc.is_main_process
        if not self.main:
            logging.getLogger("know3d_cli").setLevel(logging.WARNING)
        self.world, self.rank, self.device = acc.num_processes, acc.process_index, acc.device
        per_micro = tcfg.batch_size // tcfg.accumulation
        if per_micro % self.world:
            raise ConfigError(f"train.batch_size={tcfg.batch_size} / train.accumulation={tcfg.accumulation} = "
                              f"{per_micro} samples per micro-batch cannot be split over {self.world} processes")
        self.output_dir = Path(tcfg.output_dir).expanduser()
        if self.main:
            ensure_writable_dir(self.output_dir)
        self.emit = emit
        self.objective = FlowMatching.from_config(tcfg.sigma_min, tcfg.t_schedule)

        self.vae = self.kind == Trainable.ss_vae
        encoded = self.stage == TrainStage.ss and SsLatentSource(tcfg.ss_latents) == SsLatentSource.encoder
        self.folder = open_trellis(cfg, ss_encoder=self.vae or encoded)
        self.normalization = self.folder.shape_normalization() if self.stage != TrainStage.ss else None
        editor_channels = None
        if self.vae:
            self.dataset: TrainingDataset = OccupancyDataset(tcfg.dataset)
            self.vae_objective = SsVaeObjective(tcfg.ss_vae.loss, tcfg.ss_vae.lambda_kl)
        else:
            ss_encoder = self.folder.load_ss_vae(torch.device("cpu"))[0].eval() if encoded else None
            self.dataset = TrainingDataset(tcfg.dataset, self.stage, self.normalization,
                                           need_hdit=self.kind == Trainable.adapter, max_tokens=tcfg.max_tokens,
                                           ss_encoder=ss_encoder)
            first = self.dataset.load(0)
            editor_channels = int(first.hdit.shape[-1]) if first.hdit is not None else None
        set_seed(tcfg.seed)  # the random initial weights (adapter projections, flows and VAEs from scratch)
        self.target: TrainTarget = build_target(cfg, self.folder, self.device, self.bf16, editor_channels)
        params = list(self.target.named_trainable().values())
        self.optimizer = torch.optim.AdamW(params, lr=tcfg.optimizer.lr, betas=tuple(tcfg.optimizer.betas),
                                           eps=tcfg.optimizer.eps, weight_decay=tcfg.optimizer.weight_decay)
        self.model, self.optimizer = acc.prepare(self.target.module, self.optimizer)
        # only the main process saves and previews, so only it keeps the average
        self.ema = ExponentialMovingAverage(self.target.named_trainable(), tcfg.ema.rate if self.main else 0.0,
                                            tcfg.ema.warmup)
        self.clip = AdaptiveGradClip(tcfg.grad_clip.max_norm, tcfg.grad_clip.percentile, tcfg.grad_clip.window)
        self.order = DataOrder(len(self.dataset), tcfg.seed)
        self.preview = None
        if self.main and tcfg.validation.every > 0:
            if Distributed(tcfg.distributed) == Distributed.fsdp:
                logger.warning("validation previews are skipped with train.distributed=fsdp (sharded weights)")
            elif self.vae:
                self.preview = ReconstructionPreview(self.dataset, tcfg.validation.samples, self.device)
            else:
                settings = self.folder.sampler(self.stage, cfg.trellis2.ss if self.stage == TrainStage.ss
                                               else cfg.trellis2.shape, tcfg.validation.steps)
                self.preview = ValidationPreview(self.folder, self.stage, self.dataset, tcfg.validation.samples,
                                                 settings, self.normalization, self.device, tcfg.seed)
        self.metrics = MetricsLog(self.output_dir, emit, tcfg.tensorboard) if self.main else None

    # ------------------------------------------------------------------------------------------------ loop
    def run(self, resume: str | None) -> TrainResult:
        tcfg, acc = self.tcfg, self.accelerator
        start, checkpoint = 0, None
        if resume is not None:
            checkpoint = resolve_checkpoint(resume, self.output_dir)
            start = self._restore(checkpoint)
        if self.metrics is not None:
            self.metrics.keep_until(start)
            self.metrics.log({"event": "train_start", "step": start, "stage": self.stage.value,
                              "trainable": self.kind.value, "processes": self.world, "device": str(self.device),
                              "mixed_precision": "bf16" if self.bf16 else "fp32", "samples": len(self.dataset),
                              "parameters": sum(p.numel() for p in self.target.named_trainable().values())})
        sampler = StepBatchSampler(self.order, tcfg.batch_size, tcfg.accumulation, self.world, self.rank, start,
                                   tcfg.steps)
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler,
                                             collate_fn=collate_occupancy if self.vae else collate,
                                             num_workers=tcfg.num_workers)
        batches = iter(loader)
        window = _Window()
        self.model.train()
        for step in range(start, tcfg.steps):
            loss, grad_norm, per_sample, ts = self._step(step, batches)
            window.add(loss, grad_norm, per_sample, ts)
            done = step + 1
            if self.main and (done % tcfg.log_every == 0 or done == tcfg.steps):
                self.metrics.log(window.record(done, self._lr(step), tcfg.batch_size,
                                               self.order.epoch(done, tcfg.batch_size), self.clip.threshold))
                window = _Window()
            if done % tcfg.checkpoint_every == 0 or done == tcfg.steps:
                checkpoint = self._save(done)
            if self.preview is not None and done % tcfg.validation.every == 0:
                with self.ema.applied(self.target.module):
                    self.metrics.log(self.preview.run(self.target.module, done, self.output_dir, acc.autocast))
            acc.wait_for_everyone()
        final = max(start, tcfg.steps)
        if self.metrics is not None:
            self.metrics.log({"event": "train_done", "step": final, "output_dir": str(self.output_dir),
                              "checkpoint": str(checkpoint) if checkpoint is not None else None})
            self.metrics.close()
        acc.end_training()
        return TrainResult(self.output_dir, final, checkpoint)

    def _lr(self, step: int) -> float:
        s = self.tcfg.lr_schedule
        return self.tcfg.optimizer.lr * lr_factor(step, self.tcfg.steps, s.warmup_steps, LrDecay(s.decay),
                                                   s.min_lr_ratio)

    def _step(self, step: int, batches) -> tuple[float, float, np.ndarray, np.ndarray]:
        """Optimiser step `step` on the next micro-batches of `batches`."""
        tcfg = self.tcfg
        if self.vae:
            shape = self.target.module.latent_shape(self.dataset.grid_side)
            micro = [draw_vae_inputs(next(batches), step, tcfg.seed, shape, self.device)
                     for _ in range(tcfg.accumulation)]
        else:
            micro = [draw_inputs(next(batches), step, tcfg.seed, self.objective, tcfg.p_uncond, tcfg.p_uncond_editor,
                                 self.device) for _ in range(tcfg.accumulation)]
        return self.optimize(micro, self._lr(step))

    def optimize(self, micro_batches: list[ModelInputs] | list[SsVaeInputs], lr: float
                 ) -> tuple[float, float, np.ndarray, np.ndarray]:
        """One optimiser step on these micro-batches at learning rate `lr`.

        Returns:
            (loss averaged over micro-batches and processes, pre-clipping global gradient norm, per-sample losses
            and t of every process (none for the SS VAE)).
        """
        acc = self.accelerator
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        per_sample, ts = [], []
        for index, inputs in enumerate(micro_batches):
            sync = acc.no_sync(self.model) if index < len(micro_batches) - 1 else nullcontext()
            with sync:
                if isinstance(inputs, SsVaeInputs):
                    loss, losses = self.vae_objective(self.model, inputs)
                else:
                    loss, losses = training_loss(self.model, self.objective, inputs)
                acc.backward(loss / len(micro_batches))
            total += loss.detach() / len(micro_batches)
            per_sample.append(losses)
            ts.append(inputs.t if isinstance(inputs, ModelInputs) else torch.empty(0, device=self.device))
        params = list(self.target.named_trainable().values())
        norm = float(acc.clip_grad_norm_(params, self.clip.threshold))
        self.clip.record(norm)
        if math.isfinite(norm):
            self.optimizer.step()
        else:
            logger.warning("non-finite gradient norm (%s); the update is skipped", norm)
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.target.named_trainable())
        loss = float(acc.reduce(total, "mean"))
        all_losses = acc.gather(torch.cat(per_sample)).cpu().numpy()
        all_t = acc.gather(torch.cat(ts)).cpu().numpy()
        return loss, norm, all_losses, all_t

    # ------------------------------------------------------------------------------------------- checkpoints
    def _save(self, step: int) -> Path | None:
        from accelerate.utils import gather_object
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        acc = self.accelerator
        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        trainable, optimizer = get_state_dict(self.model, self.optimizer.optimizer, options=options)
        rng = gather_object([capture_rng()]) if self.world > 1 else [capture_rng()]
        path = None
        if self.main:
            state = TrainingState(
                step=step, identity=self.target.identity, trainable=trainable, optimizer=optimizer,
                ema=self.ema.state_dict(), ema_updates=self.ema.updates, clip=self.clip.state_dict(),
                data_order={"seed": self.order.seed, "size": self.order.size}, rng=rng)
            path = save_training_checkpoint(self.output_dir, state, self.tcfg.keep_checkpoints)
            self.metrics.log({"event": "checkpoint", "step": step, "dir": str(path)})
        acc.wait_for_everyone()
        return path

    def _restore(self, path: Path) -> int:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        state = load_training_checkpoint(path)
        problem = identity_mismatch(state.identity, self.target.identity)
        if problem is not None:
            raise CheckpointError(f"cannot resume from {path}: it was written for another run ({problem})")
        if state.data_order.get("size") != self.order.size:
            logger.warning("resuming on a dataset of %d samples; the checkpoint saw %s: the sample order differs",
                           self.order.size, state.data_order.get("size"))
        try:
            set_state_dict(self.model, self.optimizer.optimizer, model_state_dict=state.trainable,
                           optim_state_dict=state.optimizer,
                           options=StateDictOptions(full_state_dict=True, ignore_frozen_params=True, strict=False))
            if self.ema.enabled and state.ema:
                self.ema.load_state_dict(state.ema, state.ema_updates)
            elif self.ema.enabled:  # the checkpoint kept none (train.ema.rate was 0): average from here on
                logger.warning("%s holds no EMA; the EMA starts from its weights", path)
                self.ema = ExponentialMovingAverage(self.target.named_trainable(), self.ema.rate, self.ema.warmup)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"cannot resume from {path}: its tensors do not fit this run ({exc})") from exc
        self.clip.load_state_dict(state.clip)
        if self.rank < len(state.rng):
            restore_rng(state.rng[self.rank])
        logger.info("resumed from %s at step %d", path, state.step)
        return state.step


class _Window:
    """What happened since the last metrics line."""

    def __init__(self):
        self.start = time.perf_counter()
        self.losses: list[float] = []
        self.norms: list[float] = []
        self.per_sample: list[np.ndarray] = []
        self.ts: list[np.ndarray] = []

    def add(self, loss: float, norm: float, per_sample: np.ndarray, ts: np.ndarray) -> None:
        self.losses.append(loss)
        self.norms.append(norm)
        self.per_sample.append(per_sample)
        self.ts.append(ts)

    def record(self, step: int, lr: float, batch_size: int, epoch: float, clip_threshold: float) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {
            "event": "train",
            "step": step,
            "loss": float(np.mean(self.losses)),
            "loss_t_bins": t_bin_means(np.concatenate(self.ts), np.concatenate(self.per_sample)),
            "lr": lr,
            "grad_norm": float(np.mean(self.norms)),
            "clip_threshold": clip_threshold if math.isfinite(clip_threshold) else None,
            "samples_per_s": batch_size * len(self.losses) / elapsed,
            "epoch": round(epoch, 4),
        }


__all__ = ["TrainResult", "Trainer", "run_training"]
