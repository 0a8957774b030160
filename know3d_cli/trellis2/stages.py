"""The stages of TRELLIS.2 image-to-3D (spec section 1) as public functions on loaded networks.

Each function computes on the device its networks are on (moving networks is the caller's business, see
`residency.Residency`), draws its noise from the caller's CPU `torch.Generator` (so calling the stages in the
reference order, sparse structure -> shape -> texture, reproduces a seed on any device) and returns a frozen
dataclass. `Trellis2Pipeline` chains them; training code and benchmarks can call them one by one:

    image = encode_views(dinov3, [front], 512)
    ss = sample_sparse_structure(ss_flow, image, samplers.ss, generator)
    coords = occupancy_coords(decode_sparse_structure(ss_decoder, ss.latent), grid=32)
    shape = sample_shape_latent(shape_flow_512, coords, image, samplers.shape, shape_norm, generator)
    tex = sample_texture_latent(tex_flow_512, shape.latent, image, samplers.tex, shape_norm, tex_norm, generator)
    voxels = decode_shape(shape_decoder, shape.latent, 512)
    vertices, faces = shape_mesh(voxels)
    pbr = decode_texture(tex_decoder, tex.latent, voxels)

Multiview conditioning is an `ImageCondition` with two views (every sampler step averages the per-view velocity);
Know3D conditioning is an `AdapterInput` (the flow's adapter and the tapped editor tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from PIL import Image
from torch import nn

from ..errors import GenerationError
from .cascade import LatentNormalization, cap_resolution
from .conditioning import DinoV3Conditioner
from .mesh import fill_small_holes, flexible_dual_grid_to_mesh
from .models.flexi_dual_grid_vae_decoder import FlexiDualGridVaeDecoder, FlexiDualGridVoxels
from .models.know3d_adapter import EditorCondition, Know3dAdapter
from .nn.cross_attention import CrossContext
from .sampler import SamplerSettings, StepCallback, sample
from .settings import AdapterNegative
from .sparse.tensor import SparseTensor

logger = logging.getLogger(__name__)

Latent = Union[torch.Tensor, SparseTensor]
LR_GRID_TO_VOXELS = 16  # the shape decoder's `upsample(.., 4)` returns coords at 16x the latent grid


# ------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class ImageCondition:
    """DINOv3 tokens of every view at one input side."""

    views: tuple[torch.Tensor, ...]  # one (1, T, C) fp32 token tensor per view: the front, then the back view
    resolution: int  # DINOv3 input side (512 or 1024)


@dataclass(frozen=True)
class AdapterInput:
    """Know3D: the adapter of one flow and the editor tokens it brings in."""

    adapter: Know3dAdapter  # on the flow's device, its attention Linears in the flow's compute dtype
    tokens: torch.Tensor  # (1, h, w, C_editor) tapped editor hidden states
    negative: AdapterNegative = AdapterNegative.zeros  # what the unconditional pass sees of the tokens


@dataclass(frozen=True)
class FlowCondition:
    """What one velocity call of a flow is conditioned on."""

    image: CrossContext  # prepared image cross-attention keys/values (or the null context)
    editor: EditorCondition | None  # prepared editor-token keys/values, Know3D only


# ------------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class FlowSample:
    """One flow integrated from noise to a sample."""

    latent: Latent  # fp32 on the flow's device: (1, C, R, R, R) grid, or de-normalised (N, C) structured latent
    forwards: int  # velocity calls made
    tokens: int  # latent tokens (grid cells or voxels)


@dataclass(frozen=True)
class CascadeCoords:
    """High-resolution latent coordinates upsampled from the low-resolution shape latent."""

    coords: torch.Tensor  # (N, 4) int32 (batch, x, y, z) on the HR latent grid, CPU
    resolution: int  # voxel resolution they are for (the requested one, or lower under the token cap)
    requested_resolution: int  # the resolution asked for
    requested_tokens: int  # latent tokens at the requested resolution
    max_num_tokens: int  # the cap

    @property
    def lowered(self) -> bool:
        return self.resolution != self.requested_resolution

    @property
    def warning(self) -> str | None:
        """What lowering the resolution did, for the user; None when it was not lowered."""
        if not self.lowered:
            return None
        return (f"{self.requested_tokens} tokens at {self.requested_resolution} would exceed "
                f"trellis2.max_num_tokens={self.max_num_tokens}; generated at {self.resolution} instead")


@dataclass(frozen=True)
class ShapeVoxels:
    """The shape decoder's output: the final voxels and how it subdivided to reach them."""

    grid: FlexiDualGridVoxels  # dual-grid voxels of the single batch item, on the decoder's device
    subdivisions: list[Any]  # per upsampling level, the subdivision masks the texture decoder must follow
    resolution: int  # voxel grid side


# ------------------------------------------------------------------------------------------------- stages
@torch.no_grad()
def encode_views(encoder: DinoV3Conditioner, views: Sequence[Image.Image], resolution: int) -> ImageCondition:
    """DINOv3 tokens of the preprocessed views at side `resolution`."""
    tokens = encoder.encode(list(views), resolution)  # (V, T, C)
    return ImageCondition(tuple(tokens.float().split(1)), resolution)


def sample_flow(
    flow: nn.Module,
    noise: Latent,
    image: ImageCondition,
    sampler: SamplerSettings,
    adapter: AdapterInput | None = None,
    concat_cond: SparseTensor | None = None,
    on_step: StepCallback | None = None,
) -> tuple[Latent, int]:
    """Integrate one flow from `noise` (t = 1) to a sample, with CFG against all-zero image tokens; `on_step(n, N)`
    after each of its N steps (progress display).

    Returns:
        (the sample in fp32 on the flow's device, velocity calls made).
    """
    device = next(flow.parameters()).device
    contexts = [flow.prepare_context(tokens.to(device)) for tokens in image.views]
    editor = editor_negative = None
    if adapter is not None:
        tokens = adapter.tokens.to(device)
        editor = adapter.adapter.condition(tokens)
        same = adapter.negative is AdapterNegative.same
        editor_negative = editor if same else adapter.adapter.condition(torch.zeros_like(tokens))
    extra = {} if concat_cond is None else {"concat_cond": concat_cond.to(device)}

    def velocity(x: Latent, t: torch.Tensor, condition: FlowCondition) -> Latent:
        return flow(x, t, condition.image, editor=condition.editor, **extra)

    positives = [FlowCondition(context, editor) for context in contexts]
    result = sample(velocity, noise.to(device), positives, FlowCondition(flow.null_context(), editor_negative), sampler,
                    on_step=on_step)
    return result.x, result.forwards


def sample_sparse_structure(
    flow: nn.Module,
    image: ImageCondition,
    sampler: SamplerSettings,
    generator: torch.Generator,
    adapter: AdapterInput | None = None,
    on_step: StepCallback | None = None,
) -> FlowSample:
    """Stage 1: the (1, 8, R, R, R) sparse-structure latent, from `SparseStructureFlowModel` `flow`."""
    res = flow.resolution
    noise = torch.randn(1, flow.in_channels, res, res, res, generator=generator)
    latent, forwards = sample_flow(flow, noise, image, sampler, adapter, on_step=on_step)
    return FlowSample(latent, forwards, res**3)


@torch.no_grad()
def decode_sparse_structure(decoder: nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """(1, 8, 16, 16, 16) latent -> (1, 1, 64, 64, 64) fp32 occupancy logits (occupied where > 0)."""
    logits = decoder(latent.to(next(decoder.parameters()).device)).float()
    if not torch.isfinite(logits).all():
        raise GenerationError("the sparse structure decoder produced non-finite logits (NaN/Inf); try another seed")
    return logits


def sample_shape_latent(
    flow: nn.Module,
    coords: torch.Tensor,
    image: ImageCondition,
    sampler: SamplerSettings,
    normalization: LatentNormalization,
    generator: torch.Generator,
    adapter: AdapterInput | None = None,
    on_step: StepCallback | None = None,
) -> FlowSample:
    """Stage 2: the de-normalised (N, 32) shape latent on latent coords `(N, 4)`, from an `SLatFlowModel`."""
    noise = SparseTensor(torch.randn(coords.shape[0], flow.out_channels, generator=generator), coords.cpu())
    latent, forwards = sample_flow(flow, noise, image, sampler, adapter, on_step=on_step)
    return FlowSample(latent.replace(normalization.denormalize(latent.feats)), forwards, int(coords.shape[0]))


@torch.no_grad()
def cascade_coords(
    shape_decoder: FlexiDualGridVaeDecoder,
    lr_latent: SparseTensor,
    ss_grid: int,
    resolution: int,
    max_num_tokens: int,
) -> CascadeCoords:
    """LR shape latent -> HR latent coords via the shape decoder's first 4 levels, quantised to the HR latent grid;
    a resolution above 1024 is lowered in steps of 128 while the tokens reach `max_num_tokens`."""
    fine = shape_decoder.upsample(lr_latent, 4)
    coords, used, requested_tokens = cap_resolution(fine.cpu(), ss_grid * LR_GRID_TO_VOXELS, resolution,
                                                    max_num_tokens)
    if coords.shape[0] == 0:
        raise GenerationError("the shape decoder kept no voxel when upsampling the low-resolution latent")
    return CascadeCoords(coords, used, resolution, requested_tokens, max_num_tokens)


def sample_texture_latent(
    flow: nn.Module,
    shape_latent: SparseTensor,
    image: ImageCondition,
    sampler: SamplerSettings,
    shape_normalization: LatentNormalization,
    texture_normalization: LatentNormalization,
    generator: torch.Generator,
    adapter: AdapterInput | None = None,
    on_step: StepCallback | None = None,
) -> FlowSample:
    """Stage 3: the de-normalised (N, 32) PBR latent on the shape latent's coords, conditioned on the normalised
    shape latent (`concat_cond`)."""
    shape = shape_latent.replace(shape_normalization.normalize(shape_latent.feats))
    noise = SparseTensor(torch.randn(len(shape_latent), flow.out_channels, generator=generator),
                         shape_latent.coords.cpu())
    latent, forwards = sample_flow(flow, noise, image, sampler, adapter, concat_cond=shape, on_step=on_step)
    return FlowSample(latent.replace(texture_normalization.denormalize(latent.feats)), forwards, len(shape_latent))


@torch.no_grad()
def decode_shape(shape_decoder: FlexiDualGridVaeDecoder, latent: SparseTensor, resolution: int) -> ShapeVoxels:
    """Shape latent -> O-Voxel flexible dual grid at `resolution`^3 (and the subdivisions that led there)."""
    shape_decoder.set_resolution(resolution)
    h, subdivisions = shape_decoder(latent, return_subs=True)
    return ShapeVoxels(shape_decoder.dual_grid(h)[0], subdivisions, resolution)


def shape_mesh(voxels: ShapeVoxels) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual grid -> mesh with its small holes filled: (V, 3) float32 vertices, (F, 3) int64 faces."""
    grid = voxels.grid
    vertices, faces = flexible_dual_grid_to_mesh(
        grid.coords, grid.vertex_offsets, grid.edge_flags, grid.split_weights, voxels.resolution
    )
    vertices, faces = fill_small_holes(vertices, faces)
    if faces.shape[0] == 0:
        raise GenerationError("the decoded O-Voxel grid has no surface (no quad found); try another seed or image")
    return vertices, faces


@torch.no_grad()
def decode_texture(tex_decoder: nn.Module, tex_latent: SparseTensor, voxels: ShapeVoxels) -> torch.Tensor:
    """Texture latent -> (M, 6) PBR attributes in [0, 1] (base colour 0:3, metallic, roughness, alpha) on exactly
    the shape's final voxels (the decoder follows the shape decoder's subdivisions)."""
    out = tex_decoder(tex_latent, guide_subs=voxels.subdivisions)
    if not torch.equal(out.coords[:, 1:].to(voxels.grid.coords), voxels.grid.coords):
        raise GenerationError("the texture decoder's voxels differ from the shape decoder's (internal error)")
    return out.feats.float() * 0.5 + 0.5


__all__ = [
    "LR_GRID_TO_VOXELS",
    "AdapterInput",
    "CascadeCoords",
    "FlowCondition",
    "FlowSample",
    "ImageCondition",
    "Latent",
    "ShapeVoxels",
    "cascade_coords",
    "decode_shape",
    "decode_sparse_structure",
    "decode_texture",
    "encode_views",
    "sample_flow",
    "sample_shape_latent",
    "sample_sparse_structure",
    "sample_texture_latent",
    "shape_mesh",
]
