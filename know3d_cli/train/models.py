"""Everything training takes from `know3d_cli.trellis2`: the one module that imports it.

Which `pipeline.json` role a stage trains, how its flow, a Know3D adapter and the decoders for validation previews
are built or loaded, the latent normalisation and the sampler settings. After a refactor of `trellis2/` only the
imports here should need fixing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import hub
from ..config import Know3dConfig
from ..errors import ConfigError
from ..train_config import NewAdapterConfig, TrainStage
from ..trellis2.cascade import LatentNormalization
from ..trellis2.checkpoint import (
    Precision,
    build_model,
    load_adapter,
    load_model,
    read_checkpoint_json,
    read_json_object,
    save_adapter,
    save_checkpoint,
)
from ..trellis2.models.know3d_adapter import EditorCondition, Know3dAdapter
from ..trellis2.nn.attention import AttentionBackend, set_attention_backend
from ..trellis2.nn.modulated_block import EditorHook
from ..trellis2.pipeline_spec import PipelineSpec, read_pipeline_json
from ..trellis2.sampler import MODEL_TIME_SCALE, SamplerSettings, sample
from ..trellis2.settings import AdapterStage, SamplerOverrides
from ..trellis2.sparse.tensor import SparseTensor

logger = logging.getLogger(__name__)

# stage -> pipeline.json role of the flow it trains
FLOW_ROLES = {
    TrainStage.ss: "sparse_structure_flow_model",
    TrainStage.shape_512: "shape_slat_flow_model_512",
    TrainStage.shape_1024: "shape_slat_flow_model_1024",
}
# stage -> file stem of its adapter pair (both shape flows share the shape adapter), and its sampler in pipeline.json
ADAPTER_FILES = {TrainStage.ss: AdapterStage.ss, TrainStage.shape_512: AdapterStage.shape,
                 TrainStage.shape_1024: AdapterStage.shape}
# stage -> the DINOv3 tokens it is conditioned on (dataset tensor name)
DINO_TENSORS = {TrainStage.ss: "dino_512", TrainStage.shape_512: "dino_512", TrainStage.shape_1024: "dino_1024"}
# shape stages -> O-Voxel resolution of their latents (latent grid = resolution / 16)
SHAPE_RESOLUTIONS = {TrainStage.shape_512: 512, TrainStage.shape_1024: 1024}

__all__ = [
    "ADAPTER_FILES", "DINO_TENSORS", "FLOW_ROLES", "MODEL_TIME_SCALE", "SHAPE_RESOLUTIONS", "SS_DECODER_ROLE",
    "SS_ENCODER_NAME", "AdapterStage",
    "EditorCondition", "EditorHook", "FlowCheckpoint", "Know3dAdapter", "LatentNormalization", "Precision",
    "SamplerSettings", "SparseTensor", "TrellisFolder", "build_adapter", "load_adapter", "open_trellis", "sample",
    "save_adapter", "save_checkpoint",
]


@dataclass(frozen=True)
class FlowCheckpoint:
    """Where a trained flow comes from and how to write it back in the TRELLIS.2 layout."""

    name: str  # released checkpoint name (`ckpts/<name>`)
    cls: str  # network class in the json
    args: dict[str, Any]  # constructor arguments in the json


# the sparse-structure VAE's encoder checkpoint (models.ss_encoder; the decoder is pipeline.json's)
SS_ENCODER_NAME = "ss_enc_conv3d_16l8_fp16"
SS_DECODER_ROLE = "sparse_structure_decoder"


@dataclass(frozen=True)
class TrellisFolder:
    """The TRELLIS.2 model folders and their `pipeline.json` (and the SS encoder's folder, when a run needs it)."""

    spec: PipelineSpec
    trellis_dir: Path
    ss_decoder_dir: Path
    ss_encoder_dir: Path | None = None

    def stem(self, role: str) -> Path:
        return self.spec.checkpoint(role, self.trellis_dir, self.ss_decoder_dir)

    def flow_checkpoint(self, stage: TrainStage) -> FlowCheckpoint:
        stem = self.stem(FLOW_ROLES[stage])
        config = read_checkpoint_json(stem)
        return FlowCheckpoint(name=stem.name, cls=config.name, args=dict(config.args))

    def load_flow(self, stage: TrainStage, device: torch.device, reference_precision: bool,
                  from_scratch: bool = False) -> nn.Module:
        """The stage's flow: the released weights (strict), or random weights with the released args.

        `reference_precision`: block Linears in the json dtype (bf16; for a frozen base on a GPU), else all fp32.
        """
        stem = self.stem(FLOW_ROLES[stage])
        if from_scratch:
            with torch.device(device):
                flow = build_model(read_checkpoint_json(stem))
            return flow.apply_precision_policy(torch.float32)
        precision = Precision.reference if reference_precision else Precision.fp32
        return load_model(stem, device=device, precision=precision)

    def ss_vae_checkpoints(self) -> tuple[FlowCheckpoint, FlowCheckpoint]:
        """(encoder, decoder) of the sparse-structure VAE."""
        checkpoints = []
        for stem in (self._ss_encoder_stem(), self.stem(SS_DECODER_ROLE)):
            config = read_checkpoint_json(stem)
            checkpoints.append(FlowCheckpoint(name=stem.name, cls=config.name, args=dict(config.args)))
        return checkpoints[0], checkpoints[1]

    def load_ss_vae(self, device: torch.device, from_scratch: bool = False) -> tuple[nn.Module, nn.Module]:
        """(encoder, decoder) in fp32: the stored weights (strict), or random ones with the stored args."""
        networks = []
        for stem in (self._ss_encoder_stem(), self.stem(SS_DECODER_ROLE)):
            if from_scratch:
                with torch.device(device):
                    networks.append(build_model(read_checkpoint_json(stem)).float())
            else:
                networks.append(load_model(stem, device=device, precision=Precision.fp32))
        return networks[0], networks[1]

    def _ss_encoder_stem(self) -> Path:
        if self.ss_encoder_dir is None:
            raise ConfigError("this run needs the sparse-structure encoder (models.ss_encoder)")
        return self.ss_encoder_dir / "ckpts" / SS_ENCODER_NAME

    def load_decoder(self, role: str, device: torch.device) -> nn.Module:
        """A decoder for previews (`sparse_structure_decoder`, `shape_slat_decoder`), fp32."""
        return load_model(self.stem(role), device=device, precision=Precision.fp32)

    def shape_normalization(self) -> LatentNormalization:
        return LatentNormalization.from_spec(self.spec.shape_slat_normalization)

    def sampler(self, stage: TrainStage, overrides: SamplerOverrides, steps: int | None) -> SamplerSettings:
        """The stage's `pipeline.json` sampler with the non-null `trellis2.<ss|shape>.*` overrides and `steps`."""
        settings = self.spec.sparse_structure_sampler if stage == TrainStage.ss else self.spec.shape_slat_sampler
        settings = overrides.apply(settings)
        return settings if steps is None else replace(settings, steps=steps)


def open_trellis(cfg: Know3dConfig, ss_encoder: bool = False) -> TrellisFolder:
    """The configured TRELLIS.2 and TRELLIS-image-large folders, and the SS encoder's if `ss_encoder` (exit 3 when
    missing)."""
    trellis_dir = hub.resolve(cfg, "trellis2").path
    ss_decoder_dir = hub.resolve(cfg, "ss_decoder").path
    ss_encoder_dir = hub.resolve(cfg, "ss_encoder").path if ss_encoder else None
    return TrellisFolder(read_pipeline_json(trellis_dir), trellis_dir, ss_decoder_dir, ss_encoder_dir)


def build_adapter(flow: nn.Module, editor_channels: int, cfg: NewAdapterConfig,
                  attention: AttentionBackend = AttentionBackend.auto) -> Know3dAdapter:
    """A fresh zero-initialised adapter for `flow` (or the one in `cfg.init`), fp32 on the flow's device."""
    device = flow.input_layer.weight.device
    if cfg.init is not None:
        stem_dir = Path(cfg.init).expanduser()
        adapter = None
        for stage_file in AdapterStage:
            if (stem_dir / f"{stage_file.value}.json").is_file():
                adapter = load_adapter(stem_dir, stage_file, device=device, dtype=torch.float32)
                break
        if adapter is None:
            raise ConfigError(f"train.adapter.init={cfg.init} holds no ss/shape/tex adapter pair")
        if adapter.ext_channels != editor_channels or adapter.model_channels != flow.model_channels:
            raise ConfigError(f"train.adapter.init={cfg.init} is for {adapter.ext_channels}-channel editor tokens "
                              f"and model_channels={adapter.model_channels}; the data and flow need {editor_channels} "
                              f"and {flow.model_channels}")
    else:
        blocks = cfg.blocks if cfg.blocks is not None else list(range(flow.num_blocks))
        if max(blocks, default=-1) >= flow.num_blocks:
            raise ConfigError(f"train.adapter.blocks={list(blocks)} but the flow has {flow.num_blocks} blocks")
        with torch.device(device):
            adapter = Know3dAdapter(
                ext_channels=editor_channels,
                proj_channels=cfg.proj_channels,
                model_channels=flow.model_channels,
                num_heads=cfg.num_heads or flow.num_heads,
                blocks=blocks,
                pool=cfg.pool,
                qk_rms_norm=cfg.qk_rms_norm,
            )
    set_attention_backend(adapter, attention)
    return adapter.float()
