"""What a run trains (`train.trainable`): builds the differentiated module and records its identity.

The identity (stage, trainable kind, flow checkpoint, adapter arguments, trained parameter shapes) is stored in every
checkpoint; a resume checks it, and `export` rebuilds the trained network from it.

Extension point: a new kind (the sparse-structure VAE the back-part benchmark trains) adds a `Trainable` member in
`train_config.py`, a builder in `BUILDERS`, and its own objective beside `flow_matching.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import Know3dConfig
from ..errors import ConfigError
from ..train_config import Trainable, TrainStage
from .models import ADAPTER_FILES, TrellisFolder, build_adapter
from .network import FlowTrainingModule

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainTarget:
    module: FlowTrainingModule
    identity: dict[str, Any]  # JSON-ready: what was trained, checked on resume, used by export

    def named_trainable(self) -> dict[str, nn.Parameter]:
        """Trained parameters by their name in `module`."""
        return {name: p for name, p in self.module.named_parameters() if p.requires_grad}


def _flow_module(cfg: Know3dConfig, folder: TrellisFolder, stage: TrainStage, device: torch.device,
                 reduced_precision: bool, ext_channels: int | None) -> FlowTrainingModule:
    flow = folder.load_flow(stage, device, reference_precision=False, from_scratch=cfg.train.from_scratch)
    flow.requires_grad_(True)
    flow.set_attention_backend(cfg.runtime.attention)
    return FlowTrainingModule(flow, None, cfg.train.gradient_checkpointing)


def _adapter_module(cfg: Know3dConfig, folder: TrellisFolder, stage: TrainStage, device: torch.device,
                    reduced_precision: bool, ext_channels: int | None) -> FlowTrainingModule:
    if ext_channels is None:
        raise ConfigError("train.trainable=adapter needs editor hidden states (hdit) in the dataset")
    # the frozen base keeps the released mixed precision (bf16 block Linears) when training in bf16
    flow = folder.load_flow(stage, device, reference_precision=reduced_precision)
    flow.set_attention_backend(cfg.runtime.attention)
    adapter = build_adapter(flow, ext_channels, cfg.train.adapter, cfg.runtime.attention)
    adapter.requires_grad_(True)
    return FlowTrainingModule(flow, adapter, cfg.train.gradient_checkpointing)


BUILDERS: dict[Trainable, Callable[..., FlowTrainingModule]] = {
    Trainable.adapter: _adapter_module,
    Trainable.flow: _flow_module,
}


def build_target(cfg: Know3dConfig, folder: TrellisFolder, device: torch.device, reduced_precision: bool,
                 ext_channels: int | None) -> TrainTarget:
    """The module `train.trainable` asks for, and its identity."""
    stage, kind = TrainStage(cfg.train.stage), Trainable(cfg.train.trainable)
    module = BUILDERS[kind](cfg, folder, stage, device, reduced_precision, ext_channels).to(device)
    flow = folder.flow_checkpoint(stage)
    identity = {
        "stage": stage.value,
        "trainable": kind.value,
        "from_scratch": bool(cfg.train.from_scratch),
        "flow": {"name": flow.name, "class": flow.cls, "args": flow.args},
        "adapter": module.adapter.config() if module.adapter is not None else None,
        "adapter_file": ADAPTER_FILES[stage] if module.adapter is not None else None,
        "parameters": {name: list(p.shape) for name, p in module.named_parameters() if p.requires_grad},
    }
    return TrainTarget(module, identity)


def identity_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """A short description of the first difference between two identities, or None when they agree."""
    for key in ("stage", "trainable", "from_scratch", "flow", "adapter"):
        if saved.get(key) != current.get(key):
            return f"{key} differs (checkpoint: {_short(saved.get(key))}; this run: {_short(current.get(key))})"
    if saved.get("parameters") != current.get("parameters"):
        return "the trained parameters' names or shapes differ"
    return None


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


__all__ = ["BUILDERS", "TrainTarget", "build_target", "identity_mismatch"]
