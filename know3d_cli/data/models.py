"""Everything `know3d data build` takes from `know3d_cli.trellis2`: the one module that imports it.

The three VAE encoders (strictly loaded released or tiny checkpoints, in the precision generation uses for the other
TRELLIS.2 networks), the DINOv3 conditioner exactly as `Trellis2Pipeline` builds it (fp32), and the sparse tensor
type the encoders take. After a refactor of `trellis2/` only the imports here should need fixing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..runtime import Runtime
from ..trellis2 import Offload
from ..trellis2.checkpoint import load_model
from ..trellis2.conditioning import DinoV3Conditioner
from ..trellis2.sparse.conv import set_conv_backend
from ..trellis2.sparse.tensor import SparseTensor
from ..trellis2.stages import encode_views

logger = logging.getLogger(__name__)

# Released checkpoint names (under `ckpts/` of models.trellis2_encoders and models.ss_encoder).
SHAPE_ENCODER = "shape_enc_next_dc_f16c32_fp16"
TEX_ENCODER = "tex_enc_next_dc_f16c32_fp16"
SS_ENCODER = "ss_enc_conv3d_16l8_fp16"


@dataclass(frozen=True, eq=False)
class Encoders:
    """The TRELLIS.2 VAE encoders a sample's latents come from."""

    shape: nn.Module | None  # FlexiDualGridVaeEncoder: dual grid -> shape SLat posterior (None: SS-only build)
    tex: nn.Module | None  # SparseUnetVaeEncoder: PBR voxels -> texture SLat posterior (None: SS-only build)
    ss: nn.Module  # SparseStructureEncoder: 64^3 occupancy -> (8, 16^3) posterior

    def to(self, device: torch.device | str) -> Encoders:
        for module in (self.shape, self.tex, self.ss):
            if module is not None:
                module.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.ss.parameters()).device


def home_device(runtime: Runtime) -> torch.device:
    """Where models wait between phases: the CPU with sequential offload on a GPU, else the compute device."""
    return torch.device("cpu") if runtime.is_cuda and runtime.offload is Offload.sequential else runtime.device


def load_encoders(trellis_dir: Path | None, ss_dir: Path, runtime: Runtime) -> Encoders:
    """Load the three encoders strictly (fp32 when `runtime` is exact, else the reference mixed precision); only the
    SS encoder when `trellis_dir` is None (an SS-only build).

    Raises:
        ModelMissingError / CheckpointError: a checkpoint is missing or does not match its network.
    """
    precision = runtime.trellis2_precision
    device = home_device(runtime)
    models = []
    stems = [Path(ss_dir) / "ckpts" / SS_ENCODER]
    if trellis_dir is not None:
        stems = [Path(trellis_dir) / "ckpts" / SHAPE_ENCODER, Path(trellis_dir) / "ckpts" / TEX_ENCODER, *stems]
    for stem in stems:
        model = load_model(stem, device=device, precision=precision)
        set_conv_backend(model, runtime.sparse_conv)
        models.append(model)
    return Encoders(*models) if trellis_dir is not None else Encoders(None, None, models[0])


def load_dinov3(path: Path, runtime: Runtime) -> DinoV3Conditioner:
    """The DINOv3 conditioner as generation builds it (fp32 weights)."""
    return DinoV3Conditioner(path, device=home_device(runtime), dtype=torch.float32)


def sparse(feats: torch.Tensor, coords: torch.Tensor) -> SparseTensor:
    """`feats` (N, C) on `coords` (N, 4) int32 (batch, x, y, z)."""
    return SparseTensor(feats, coords)


__all__ = ["SHAPE_ENCODER", "SS_ENCODER", "TEX_ENCODER", "DinoV3Conditioner", "Encoders", "encode_views",
           "home_device", "load_dinov3", "load_encoders", "sparse"]
