"""What a run trains (`train.trainable`): builds the differentiated module and records its identity.

The identity (stage, trainable kind, flow checkpoint, adapter arguments, trained parameter shapes) is stored in every
checkpoint; a resume checks it, and `export` rebuilds the trained network from it.

Extension point: a new kind adds a `Trainable` member in `train_config.py`, a builder in `BUILDERS` (module and the
identity of what it trains) and its own objective beside `flow_matching.py` (the SS VAE: `ss_vae.py`).
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
from .models import ADAPTER_FILES, FlowCheckpoint, TrellisFolder, build_adapter
from .network import FlowTrainingModule
from .ss_vae import SsVaeTrainingModule

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainTarget:
    module: FlowTrainingModule | SsVaeTrainingModule
    identity: dict[str, Any]  # JSON-ready: what was trained, checked on resume, used by export

    def named_trainable(self) -> dict[str, nn.Parameter]:
        """Trained parameters by their name in `module`."""
        return {name: p for name, p in self.module.named_parameters() if p.requires_grad}


def _flow_module(cfg: Know3dConfig, folder: TrellisFolder, stage: TrainStage, device: torch.device,
                 reduced_precision: bool, editor_channels: int | None) -> tuple[nn.Module, dict[str, Any]]:
    flow = folder.load_flow(stage, device, reference_precision=False, from_scratch=cfg.train.from_scratch)
    flow.requires_grad_(True)
    flow.set_attention_backend(cfg.runtime.attention)
    return FlowTrainingModule(flow, None, cfg.train.gradient_checkpointing), _flow_identity(folder, stage, None)


def _flow_identity(folder: TrellisFolder, stage: TrainStage, module: FlowTrainingModule | None) -> dict[str, Any]:
    adapter = module.adapter if module is not None else None
    return {"flow": _network(folder.flow_checkpoint(stage)),
            "adapter": adapter.config() if adapter is not None else None,
            "adapter_file": ADAPTER_FILES[stage] if adapter is not None else None}


def _network(checkpoint: FlowCheckpoint) -> dict[str, Any]:
    return {"name": checkpoint.name, "class": checkpoint.cls, "args": checkpoint.args}


def _adapter_module(cfg: Know3dConfig, folder: TrellisFolder, stage: TrainStage, device: torch.device,
                    reduced_precision: bool, editor_channels: int | None) -> tuple[nn.Module, dict[str, Any]]:
    if editor_channels is None:
        raise ConfigError("train.trainable=adapter needs editor hidden states (hdit) in the dataset")
    # the frozen base keeps the released mixed precision (bf16 block Linears) when training in bf16
    flow = folder.load_flow(stage, device, reference_precision=reduced_precision)
    flow.set_attention_backend(cfg.runtime.attention)
    adapter = build_adapter(flow, editor_channels, cfg.train.adapter, cfg.runtime.attention)
    adapter.requires_grad_(True)
    module = FlowTrainingModule(flow, adapter, cfg.train.gradient_checkpointing)
    return module, _flow_identity(folder, stage, module)


def _ss_vae_module(cfg: Know3dConfig, folder: TrellisFolder, stage: TrainStage, device: torch.device,
                   reduced_precision: bool, editor_channels: int | None) -> tuple[nn.Module, dict[str, Any]]:
    encoder, decoder = folder.load_ss_vae(device, from_scratch=cfg.train.from_scratch)
    module = SsVaeTrainingModule(encoder, decoder).requires_grad_(True)
    enc, dec = folder.ss_vae_checkpoints()
    return module, {"flow": None, "adapter": None, "adapter_file": None,
                    "vae": {"encoder": _network(enc), "decoder": _network(dec)}}


BUILDERS: dict[Trainable, Callable[..., tuple[nn.Module, dict[str, Any]]]] = {
    Trainable.adapter: _adapter_module,
    Trainable.flow: _flow_module,
    Trainable.ss_vae: _ss_vae_module,
}


def build_target(cfg: Know3dConfig, folder: TrellisFolder, device: torch.device, reduced_precision: bool,
                 editor_channels: int | None) -> TrainTarget:
    """The module `train.trainable` asks for, and its identity."""
    stage, kind = TrainStage(cfg.train.stage), Trainable(cfg.train.trainable)
    module, networks = BUILDERS[kind](cfg, folder, stage, device, reduced_precision, editor_channels)
    module = module.to(device)
    identity = {
        "stage": stage.value,
        "trainable": kind.value,
        "from_scratch": bool(cfg.train.from_scratch),
        **networks,
        "parameters": {name: list(p.shape) for name, p in module.named_parameters() if p.requires_grad},
    }
    return TrainTarget(module, identity)


def identity_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """A short description of the first difference between two identities, or None when they agree."""
    for key in ("stage", "trainable", "from_scratch", "flow", "adapter", "vae"):
        if saved.get(key) != current.get(key):
            return f"{key} differs (checkpoint: {_short(saved.get(key))}; this run: {_short(current.get(key))})"
    if saved.get("parameters") != current.get("parameters"):
        return "the trained parameters' names or shapes differ"
    return None


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


__all__ = ["BUILDERS", "TrainTarget", "build_target", "identity_mismatch"]
