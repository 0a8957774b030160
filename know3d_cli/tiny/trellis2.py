"""Tiny random TRELLIS.2-4B and TRELLIS-image-large folders in the released on-disk layout.

`<root>/trellis2/`: `pipeline.json` (the released structure, sampler values and latent normalisation) and
`ckpts/<released name>.{json,safetensors}` for the sparse-structure flow, the four structured-latent flows, the
shape and texture decoders and the shape and texture encoders (used by `know3d data build`; pipeline.json does not
list them, as in the release). `<root>/trellis_image_large/ckpts/ss_{dec,enc}_conv3d_16l8_fp16.{json,safetensors}`:
the sparse-structure decoder and encoder. Every network has the released classes, argument keys, levels and block
types, and the released tensor names up to the number of blocks, with tiny widths; files are stored in the released
dtypes (DiTs bf16, SC-VAE decoders and encoders fp16, the sparse-structure decoder's and encoder's fp16 block convs
and fp32 rest).

Test weights only. Some of them are shaped rather than left random, so that the chain yields a usable result:

- The sparse-structure decoder is built to produce one smooth central blob. Its residual stream carries a "signal"
  channel next to large constant "anchor" channels (so each channel LayerNorm acts almost linearly on the signal);
  every ResBlock replaces the signal by a 3x3x3 box blur of itself, and so do the upsampling convs and the output
  conv. Starting from a constant, zero padding turns the nested blurs into a bump that peaks at the grid centre.
  The latent enters the signal through small random zero-sum kernels (its local variations move the surface a
  little; a per-channel offset of the latent has no effect) and every weight gets
  small random noise. The output bias is then calibrated on random latents so that `TINY_SS_OCCUPANCY` of the 64^3
  grid is occupied: a single closed, hole-free blob.
- The shape decoder's subdivision heads (`to_subdiv`) decide per voxel: all 8 children or none (identical rows),
  with a bias calibrated on a random latent so that `TINY_SUBDIVIDED` of the voxels subdivide, i.e. the voxel count
  grows x2.4 per level instead of the ~x4 of random logits, which keeps the 1024 cascade small on a CPU; kept voxels
  come in solid 2x2x2 groups, so the dual-grid mesh has faces.
- The flows' adaLN-Zero layers and output layers (zero at init, so an untrained flow would predict v = 0) get small
  random weights, so every flow changes its input.
- The shape and texture encoders' `to_latent` layers are rescaled so that, on the O-Voxel of a sphere
  (`sphere_dual_grid`), the posterior mean has the released per-channel latent mean and std (so encoded latents
  normalise to unit scale with pipeline.json's statistics, and the tiny shape decoder subdivides them as it does
  sampled latents), and the posterior std is `TINY_POSTERIOR_STD` of the released latent std.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_write
from ..trellis2.checkpoint import save_checkpoint
from ..trellis2.models.flexi_dual_grid_vae_decoder import FlexiDualGridVaeDecoder
from ..trellis2.models.flexi_dual_grid_vae_encoder import FlexiDualGridVaeEncoder
from ..trellis2.models.sparse_structure_decoder import ResBlock3d, SparseStructureDecoder, Upsample3d
from ..trellis2.models.sparse_structure_encoder import SparseStructureEncoder
from ..trellis2.models.sparse_structure_flow import SparseStructureFlowModel
from ..trellis2.models.sparse_unet_vae_decoder import SparseUnetVaeDecoder
from ..trellis2.models.sparse_unet_vae_encoder import SparseUnetVaeEncoder
from ..trellis2.models.structured_latent_flow import SLatFlowModel
from ..trellis2.sparse.tensor import SparseTensor
from .marker import clear, is_complete, mark_complete

logger = logging.getLogger(__name__)

TRELLIS2_DIR = "trellis2"  # under the tiny root (configs/trellis2/tiny.yaml: models.trellis2.path)
SS_DECODER_DIR = "trellis_image_large"  # configs/trellis2/tiny.yaml: models.ss_decoder.path

TINY_COND_CHANNELS = 32  # default image-token channels (= the tiny DINOv3 hidden size)
TINY_MODEL_CHANNELS = 32  # C of every tiny flow (an adapter for them needs model_channels=32)
TINY_NUM_HEADS = 2  # head dim 16
TINY_NUM_BLOCKS = 2
TINY_DECODER_CHANNELS = [32, 32, 16, 16, 8]  # released [1024, 512, 256, 128, 64]
TINY_DECODER_BLOCKS = [1, 1, 1, 1, 0]  # released [4, 16, 8, 4, 0]
TINY_SS_DECODER_CHANNELS = [32, 16, 8]  # released [512, 128, 32]
TINY_ENCODER_CHANNELS = [8, 16, 16, 32, 32]  # released [64, 128, 256, 512, 1024]
TINY_ENCODER_BLOCKS = [0, 1, 1, 1, 1]  # released [0, 4, 8, 16, 4]
TINY_SS_ENCODER_CHANNELS = [8, 16, 32]  # released [32, 128, 512]
TINY_SS_OCCUPANCY = 0.06  # fraction of the 64^3 grid the tiny sparse-structure decoder marks occupied
TINY_SUBDIVIDED = 0.3  # fraction of voxels the tiny shape decoder subdivides (into all 8 children): x2.4 per level
TINY_POSTERIOR_STD = 0.1  # posterior std of the tiny SC-VAE encoders, as a fraction of the released latent std

SS_DECODER_NAME = "ss_dec_conv3d_16l8_fp16"
SS_DECODER_REPO_PATH = f"microsoft/TRELLIS-image-large/ckpts/{SS_DECODER_NAME}"
SS_ENCODER_NAME = "ss_enc_conv3d_16l8_fp16"

_SAMPLER = "FlowEulerGuidanceIntervalSampler"

# `args` of the released pipeline.json minus `models` (trellis2.md sections 1.1 and 2.8).
RELEASED_PIPELINE_ARGS: dict[str, Any] = {
    "sparse_structure_sampler": {
        "name": _SAMPLER,
        "args": {"sigma_min": 1e-5},
        "params": {"steps": 12, "guidance_strength": 7.5, "guidance_rescale": 0.7, "guidance_interval": [0.6, 1.0],
                   "rescale_t": 5.0},
    },
    "shape_slat_sampler": {
        "name": _SAMPLER,
        "args": {"sigma_min": 1e-5},
        "params": {"steps": 12, "guidance_strength": 7.5, "guidance_rescale": 0.5, "guidance_interval": [0.6, 1.0],
                   "rescale_t": 3.0},
    },
    "tex_slat_sampler": {
        "name": _SAMPLER,
        "args": {"sigma_min": 1e-5},
        "params": {"steps": 12, "guidance_strength": 1.0, "guidance_rescale": 0.0, "guidance_interval": [0.6, 0.9],
                   "rescale_t": 3.0},
    },
    "shape_slat_normalization": {
        "mean": [0.781296, 0.018091, -0.495192, -0.558457, 1.06053, 0.093252, 1.518149, -0.933218, -0.732996,
                 2.604095, -0.118341, -2.143904, 0.495076, -2.179512, -2.130751, -0.996944, 0.261421, -2.217463,
                 1.260067, -0.150213, 3.790713, 1.481266, -1.046058, -1.523667, -0.059621, 2.22078, 1.621212,
                 0.87723, 0.567247, -3.175944, -3.186688, 1.578665],
        "std": [5.972266, 4.706852, 5.44501, 5.209927, 5.32022, 4.547237, 5.020802, 5.444004, 5.226681, 5.683095,
                4.831436, 5.286469, 5.652043, 5.367606, 5.525084, 4.730578, 4.805265, 5.124013, 5.530808, 5.619001,
                5.10393, 5.41767, 5.269677, 5.547194, 5.634698, 5.235274, 6.110351, 5.511298, 6.237273, 4.879207,
                5.347008, 5.405691],
    },
    "tex_slat_normalization": {
        "mean": [3.501659, 2.212398, 2.226094, 0.251093, -0.026248, -0.687364, 0.439898, -0.928075, 0.029398,
                 -0.339596, -0.869527, 1.038479, -0.972385, 0.126042, -1.129303, 0.455149, -1.209521, 2.069067,
                 0.544735, 2.569128, -0.323407, 2.293, -1.925608, -1.217717, 1.213905, 0.971588, -0.023631, 0.10675,
                 2.021786, 0.250524, -0.662387, -0.768862],
        "std": [2.665652, 2.743913, 2.765121, 2.595319, 3.037293, 2.291316, 2.144656, 2.911822, 2.969419, 2.501689,
                2.154811, 3.163343, 2.621215, 2.381943, 3.186697, 3.021588, 2.295916, 3.234985, 3.233086, 2.26014,
                2.874801, 2.810596, 3.29272, 2.674999, 2.680878, 2.372054, 2.451546, 2.353556, 2.995195, 2.379849,
                2.786195, 2.77519],
    },
    "image_cond_model": {"name": "DinoV3FeatureExtractor",
                         "args": {"model_name": "facebook/dinov3-vitl16-pretrain-lvd1689m"}},
    "rembg_model": {"name": "BiRefNet", "args": {"model_name": "briaai/RMBG-2.0"}},
    "default_pipeline_type": "1024_cascade",
}

# pipeline.json role -> (released checkpoint name, class, stored dtype); the SS decoder lives in the other repo.
_DIT_CHECKPOINTS = {
    "sparse_structure_flow_model": ("ss_flow_img_dit_1_3B_64_bf16", SparseStructureFlowModel),
    "shape_slat_flow_model_512": ("slat_flow_img2shape_dit_1_3B_512_bf16", SLatFlowModel),
    "shape_slat_flow_model_1024": ("slat_flow_img2shape_dit_1_3B_1024_bf16", SLatFlowModel),
    "tex_slat_flow_model_512": ("slat_flow_imgshape2tex_dit_1_3B_512_bf16", SLatFlowModel),
    "tex_slat_flow_model_1024": ("slat_flow_imgshape2tex_dit_1_3B_1024_bf16", SLatFlowModel),
}
# (resolution, in_channels, out_channels) of each released DiT
_DIT_SHAPES = {
    "sparse_structure_flow_model": (16, 8, 8),
    "shape_slat_flow_model_512": (32, 32, 32),
    "shape_slat_flow_model_1024": (64, 32, 32),
    "tex_slat_flow_model_512": (32, 64, 32),
    "tex_slat_flow_model_1024": (32, 64, 32),
}
SHAPE_DECODER_NAME = "shape_dec_next_dc_f16c32_fp16"
TEX_DECODER_NAME = "tex_dec_next_dc_f16c32_fp16"
SHAPE_ENCODER_NAME = "shape_enc_next_dc_f16c32_fp16"
TEX_ENCODER_NAME = "tex_enc_next_dc_f16c32_fp16"


def released_models_map() -> dict[str, str]:
    """`args.models` of the released pipeline.json."""
    models = {role: f"ckpts/{name}" for role, (name, _) in _DIT_CHECKPOINTS.items()}
    models["sparse_structure_decoder"] = SS_DECODER_REPO_PATH
    models["shape_slat_decoder"] = f"ckpts/{SHAPE_DECODER_NAME}"
    models["tex_slat_decoder"] = f"ckpts/{TEX_DECODER_NAME}"
    return models


def write_tiny_trellis2(
    root: Path, seed: int = 0, cond_channels: int = TINY_COND_CHANNELS
) -> tuple[Path, Path]:
    """Write the tiny TRELLIS.2 set under `root`; deterministic in (seed, cond_channels), idempotent.

    Args:
        root: the tiny model root; `root/trellis2` and `root/trellis_image_large` are (re)written.
        seed: seed of every random weight.
        cond_channels: image-token channels the flows cross-attend to (the tiny DINOv3 hidden size).

    Returns:
        (TRELLIS.2 folder, TRELLIS-image-large folder).
    """
    root = Path(root)
    trellis_dir, ss_dir = root / TRELLIS2_DIR, root / SS_DECODER_DIR
    kind = f"trellis2-cond{cond_channels}-enc"  # "-enc": folders written before the encoders were added are redone
    if is_complete(trellis_dir, kind, seed) and is_complete(ss_dir, kind, seed):
        return trellis_dir, ss_dir
    clear(trellis_dir)
    clear(ss_dir)
    with torch.random.fork_rng(devices=[]):
        for index, role in enumerate(_DIT_CHECKPOINTS):
            _write_dit(trellis_dir, role, cond_channels, seed * 100 + index)
        _write_sc_vae_decoder(trellis_dir, shape=True, seed=seed * 100 + 10)
        _write_sc_vae_decoder(trellis_dir, shape=False, seed=seed * 100 + 11)
        _write_ss_decoder(ss_dir, seed=seed * 100 + 20)
        # each network seeds itself, so adding these left every earlier file unchanged
        _write_sc_vae_encoder(trellis_dir, shape=True, seed=seed * 100 + 12)
        _write_sc_vae_encoder(trellis_dir, shape=False, seed=seed * 100 + 13)
        _write_ss_encoder(ss_dir, seed=seed * 100 + 21)
    pipeline = {"name": "Trellis2ImageTo3DPipeline", "args": {"models": released_models_map(),
                                                               **RELEASED_PIPELINE_ARGS}}
    atomic_write(trellis_dir / "pipeline.json", (json.dumps(pipeline, indent=4) + "\n").encode())
    mark_complete(ss_dir, kind, seed)
    mark_complete(trellis_dir, kind, seed)
    logger.debug("wrote tiny TRELLIS.2 to %s and %s", trellis_dir, ss_dir)
    return trellis_dir, ss_dir


# ---------------------------------------------------------------------------------------------------- flows
def dit_args(role: str, cond_channels: int = TINY_COND_CHANNELS) -> dict[str, Any]:
    """Json args of the tiny flow for a pipeline.json role: the released keys with tiny widths."""
    resolution, in_channels, out_channels = _DIT_SHAPES[role]
    return {
        "resolution": resolution,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "model_channels": TINY_MODEL_CHANNELS,
        "cond_channels": cond_channels,
        "num_blocks": TINY_NUM_BLOCKS,
        "num_heads": TINY_NUM_HEADS,
        "mlp_ratio": 5.3334,
        "pe_mode": "rope",
        "share_mod": True,
        "initialization": "scaled",
        "qk_rms_norm": True,
        "qk_rms_norm_cross": True,
        "dtype": "bfloat16",
    }


def _write_dit(trellis_dir: Path, role: str, cond_channels: int, seed: int) -> None:
    name, cls = _DIT_CHECKPOINTS[role]
    args = dit_args(role, cond_channels)
    torch.manual_seed(seed)
    model = cls(**args)
    with torch.no_grad():  # adaLN-Zero and the zero output layer would make the flow a no-op
        for layer in (model.adaLN_modulation[1], model.out_layer):
            layer.weight.normal_(0.0, 0.05)
            layer.bias.normal_(0.0, 0.05)
        for param_name, param in model.named_parameters():
            if param_name.endswith("bias") and not param.any():
                param.normal_(0.0, 0.02)
    save_checkpoint(model, trellis_dir / "ckpts" / name, cls.__name__, args, dtype=torch.bfloat16, write=atomic_write)


# ------------------------------------------------------------------------------------------- SC-VAE decoders
def decoder_args(shape: bool) -> dict[str, Any]:
    """Json args of the tiny shape (FlexiDualGridVaeDecoder) or texture (SparseUnetVaeDecoder) decoder."""
    common = {
        "model_channels": list(TINY_DECODER_CHANNELS),
        "latent_channels": 32,
        "num_blocks": list(TINY_DECODER_BLOCKS),
        "block_type": ["SparseConvNeXtBlock3d"] * len(TINY_DECODER_CHANNELS),
        "up_block_type": ["SparseResBlockC2S3d"] * (len(TINY_DECODER_CHANNELS) - 1),
        "use_fp16": True,
    }
    if shape:
        return {"resolution": 256, **common}
    return {"out_channels": 6, **common, "pred_subdiv": False}


def _write_sc_vae_decoder(trellis_dir: Path, shape: bool, seed: int) -> None:
    cls, name = (FlexiDualGridVaeDecoder, SHAPE_DECODER_NAME) if shape else (SparseUnetVaeDecoder, TEX_DECODER_NAME)
    args = decoder_args(shape)
    torch.manual_seed(seed)
    model = cls(**args)
    model.convert_to_fp16()  # round to the stored precision first, so the calibration sees the saved weights
    model.convert_to_fp32()
    if shape:
        _calibrate_subdivision(model, TINY_SUBDIVIDED, torch.Generator().manual_seed(seed))
    save_checkpoint(model, trellis_dir / "ckpts" / name, cls.__name__, args, dtype=torch.float16, write=atomic_write)


@torch.no_grad()
def _calibrate_subdivision(decoder: FlexiDualGridVaeDecoder, fraction: float, generator: torch.Generator) -> None:
    """Make every C2S block subdivide all-or-nothing, `fraction` of its voxels, on a random latent ball."""
    axis = torch.arange(32)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    ball = grid[((grid - 15.5) ** 2).sum(dim=1) <= 6.0**2]
    coords = torch.cat([torch.zeros(len(ball), 1, dtype=torch.int64), ball], dim=1).to(torch.int32)
    norm = RELEASED_PIPELINE_ARGS["shape_slat_normalization"]
    feats = torch.randn(len(coords), decoder.latent_channels, generator=generator)
    feats = feats * torch.tensor(norm["std"]) + torch.tensor(norm["mean"])
    latent = SparseTensor(feats, coords)
    for level, blocks in enumerate(decoder.blocks[:-1]):
        head = blocks[-1].to_subdiv
        head.weight.copy_(head.weight[:1].expand_as(head.weight).clone())
        head.bias.zero_()
        captured: list[torch.Tensor] = []
        hook = head.register_forward_hook(lambda module, args, out: captured.append(out[:, 0].float()))
        try:
            decoder.upsample(latent, level + 1)
        finally:
            hook.remove()
        head.bias.fill_(-torch.quantile(captured[-1], 1.0 - fraction).item())


# ------------------------------------------------------------------------------------------- SC-VAE encoders
def encoder_args(shape: bool) -> dict[str, Any]:
    """Json args of the tiny shape (FlexiDualGridVaeEncoder) or texture (SparseUnetVaeEncoder) encoder."""
    common = {
        "model_channels": list(TINY_ENCODER_CHANNELS),
        "latent_channels": 32,
        "num_blocks": list(TINY_ENCODER_BLOCKS),
        "block_type": ["SparseConvNeXtBlock3d"] * len(TINY_ENCODER_CHANNELS),
        "down_block_type": ["SparseResBlockS2C3d"] * (len(TINY_ENCODER_CHANNELS) - 1),
        "use_fp16": True,
    }
    return common if shape else {"in_channels": 6, **common}


def _write_sc_vae_encoder(trellis_dir: Path, shape: bool, seed: int) -> None:
    cls, name = (FlexiDualGridVaeEncoder, SHAPE_ENCODER_NAME) if shape else (SparseUnetVaeEncoder, TEX_ENCODER_NAME)
    args = encoder_args(shape)
    torch.manual_seed(seed)
    model = cls(**args)
    model.convert_to_fp16()  # round to the stored precision first, so the calibration sees the saved weights
    model.convert_to_fp32()
    _calibrate_posterior(model, shape)
    save_checkpoint(model, trellis_dir / "ckpts" / name, cls.__name__, args, dtype=torch.float16, write=atomic_write)


def sphere_dual_grid(resolution: int = 64, radius: float = 30.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The flexible dual grid of a sphere centred in a `resolution`^3 grid (radius in voxels), the encoders' layout.

    A voxel is active when the sphere passes through it; its dual vertex is the sphere point nearest its centre; its
    flag on axis a says the sphere crosses the a-edge through the voxel's maximum corner.

    Returns:
        coords (N, 4) int32 (batch 0, x, y, z), vertices (N, 3) float32 in [0, 1], intersected (N, 3) bool.
    """
    axis = torch.arange(resolution)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    centre = torch.full((3,), resolution / 2)
    xyz = grid[((grid + 0.5 - centre).norm(dim=1) - radius).abs() < 0.5 * math.sqrt(3)]  # the sphere can cross it
    direction = xyz + 0.5 - centre
    vertices = (centre + direction / direction.norm(dim=1, keepdim=True) * radius - xyz).clamp(0.0, 1.0)
    corner = (xyz + 1).float()  # the maximum corner, shared by the three owned edges

    def inside(points: torch.Tensor) -> torch.Tensor:
        return (points - centre).norm(dim=-1) < radius

    flags = torch.stack([inside(corner) != inside(corner - torch.eye(3)[a]) for a in range(3)], dim=1)
    coords = torch.cat([torch.zeros(len(xyz), 1, dtype=torch.int64), xyz], dim=1).to(torch.int32)
    return coords, vertices.float(), flags


def sphere_pbr_attributes(coords: torch.Tensor, resolution: int = 64) -> torch.Tensor:
    """(N, 6) texture-encoder input on `coords`: a base-colour ramp over the grid, metallic 0.1, roughness 0.7,
    alpha 1, mapped to [-1, 1]."""
    base_colour = coords[:, 1:].float() / resolution
    constant = torch.tensor([0.1, 0.7, 1.0]).expand(len(coords), 3)
    return torch.cat([base_colour, constant], dim=1) * 2 - 1


@torch.no_grad()
def _calibrate_posterior(encoder: SparseUnetVaeEncoder, shape: bool) -> None:
    """Rescale `to_latent` so the posterior on a sphere has the released latent statistics (module docstring)."""
    coords, vertices, flags = sphere_dual_grid()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices gain nothing from threads, and the result no longer depends on them
    try:
        if shape:
            posterior = encoder(SparseTensor(vertices, coords), SparseTensor(flags, coords))
        else:
            posterior = encoder(SparseTensor(sphere_pbr_attributes(coords), coords))
    finally:
        torch.set_num_threads(threads)
    norm = RELEASED_PIPELINE_ARGS["shape_slat_normalization" if shape else "tex_slat_normalization"]
    target_mean, target_std = torch.tensor(norm["mean"]), torch.tensor(norm["std"])
    scale = target_std / posterior.mean.std(dim=0).clamp_min(1e-6)
    channels = encoder.latent_channels
    weight, bias = encoder.to_latent.weight, encoder.to_latent.bias
    weight[:channels] *= scale[:, None]
    bias[:channels] = (bias[:channels] - posterior.mean.mean(dim=0)) * scale + target_mean
    weight[channels:] *= 0.01
    bias[channels:] = 2 * torch.log(TINY_POSTERIOR_STD * target_std)


# ------------------------------------------------------------------------------------ sparse-structure encoder
def ss_encoder_args() -> dict[str, Any]:
    return {
        "in_channels": 1,
        "latent_channels": 8,
        "num_res_blocks": 2,
        "num_res_blocks_middle": 2,
        "channels": list(TINY_SS_ENCODER_CHANNELS),
        "use_fp16": True,
    }


def _write_ss_encoder(ss_dir: Path, seed: int) -> None:
    torch.manual_seed(seed)
    encoder = SparseStructureEncoder(**ss_encoder_args())
    encoder.convert_to_fp16()  # block convs fp16, input/output layers and norms fp32, as released
    save_checkpoint(encoder, ss_dir / "ckpts" / SS_ENCODER_NAME, "SparseStructureEncoder", ss_encoder_args(),
                    write=atomic_write)


# ------------------------------------------------------------------------------------ sparse-structure decoder
def ss_decoder_args() -> dict[str, Any]:
    return {
        "out_channels": 1,
        "latent_channels": 8,
        "num_res_blocks": 2,
        "num_res_blocks_middle": 2,
        "channels": list(TINY_SS_DECODER_CHANNELS),
        "use_fp16": True,
    }


def tiny_ss_decoder(seed: int = 0, occupancy: float = TINY_SS_OCCUPANCY) -> SparseStructureDecoder:
    """The shaped tiny sparse-structure decoder (see the module docstring), block convs already fp16-rounded."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    decoder = SparseStructureDecoder(**ss_decoder_args())
    _shape_blob(decoder, generator)
    decoder.convert_to_fp16()  # the stored precision; calibrate on exactly what a loader will see
    decoder.convert_to_fp32()
    latents = torch.randn(2, decoder.latent_channels, 16, 16, 16, generator=generator)
    with torch.no_grad():
        logits = decoder(latents)
        threshold = torch.quantile(logits.flatten()[::7].double(), 1.0 - occupancy).item()
        decoder.out_layer[2].bias.sub_(threshold)
    return decoder


def _write_ss_decoder(ss_dir: Path, seed: int) -> None:
    decoder = tiny_ss_decoder(seed)
    decoder.convert_to_fp16()
    save_checkpoint(decoder, ss_dir / "ckpts" / SS_DECODER_NAME, "SparseStructureDecoder", ss_decoder_args(),
                    write=atomic_write)


_ANCHOR = 30.0  # magnitude of the constant anchor channels (>> the signal, ~1)
_SIGNAL_OFFSET = 5.0  # LayerNorm bias of signal channels: keeps SiLU in its near-linear range
_WEIGHT_NOISE = 1e-3
_LATENT_WEIGHT = 0.1


def _anchors(channels: int) -> torch.Tensor:
    """(C,) channels 0, 1 free for the signal, the rest +A, -A, +A, ... (zero mean)."""
    values = torch.zeros(channels)
    values[2:] = _ANCHOR * torch.tensor([1.0, -1.0]).repeat((channels - 2) // 2)
    return values


def _box() -> torch.Tensor:
    return torch.full((3, 3, 3), 1.0 / 27.0)


def _identity() -> torch.Tensor:
    kernel = torch.zeros(3, 3, 3)
    kernel[1, 1, 1] = 1.0
    return kernel


@torch.no_grad()
def _shape_blob(decoder: SparseStructureDecoder, generator: torch.Generator) -> None:
    """Weights under which the residual stream's channel 0 is a nested box blur of a constant (plus a little
    latent), computed with zero padding, i.e. a bump peaking at the centre. Channel 1 is scratch space inside the
    ResBlocks; channels 2+ hold constant anchors that dominate each LayerNorm's variance."""

    def set_norm(norm: nn.LayerNorm, signal: tuple[int, ...]) -> None:
        channels = norm.weight.numel()
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        for ch in signal:  # undo the division by the anchor-dominated std
            norm.weight[ch] = _ANCHOR * math.sqrt((channels - 2) / channels)
            norm.bias[ch] = _SIGNAL_OFFSET

    def noisy(weight: torch.Tensor) -> None:
        weight.add_(torch.randn(weight.shape, generator=generator) * _WEIGHT_NOISE)

    def set_resblock(block: ResBlock3d) -> None:
        channels = block.conv1.weight.shape[0]
        # conv1: ch0 = signal, ch1 = blurred signal (offset removed), ch2+ = anchors again for norm2
        set_norm(block.norm1, (0,))
        block.conv1.weight.zero_()
        block.conv1.weight[0, 0] = _identity()
        block.conv1.weight[1, 0] = _box()
        block.conv1.bias.copy_(_anchors(channels))
        block.conv1.bias[:2] = -_SIGNAL_OFFSET
        # conv2: residual = blur(ch1) - ch0, so the stream's signal becomes blur(blur(signal))
        set_norm(block.norm2, (0, 1))
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
        block.conv2.weight[0, 1] = _box()
        block.conv2.weight[0, 0] = -_identity()
        noisy(block.conv1.weight)
        noisy(block.conv2.weight)

    def set_upsample(block: Upsample3d) -> None:
        out_channels = block.conv.weight.shape[0] // 8
        block.conv.weight.zero_()
        block.conv.weight[:8, 0] = _box()  # output channel 0 at all 8 sub-positions
        block.conv.bias.copy_(_anchors(out_channels).repeat_interleave(8))
        noisy(block.conv.weight)

    inp = decoder.input_layer
    inp.weight.zero_()
    inp.weight[0].normal_(0.0, _LATENT_WEIGHT, generator=generator)
    inp.weight[0] -= inp.weight[0].mean(dim=(1, 2, 3), keepdim=True)  # a latent's per-channel offset cancels
    inp.bias.copy_(_anchors(inp.weight.shape[0]))
    inp.bias[0] = 1.0
    for block in (*decoder.middle_block, *decoder.blocks):
        if isinstance(block, ResBlock3d):
            set_resblock(block)
        else:
            set_upsample(block)
    set_norm(decoder.out_layer[0], (0,))
    out = decoder.out_layer[2]
    out.weight.zero_()
    out.weight[0, 0] = _box()
    out.bias.zero_()
    noisy(out.weight)


__all__ = [
    "RELEASED_PIPELINE_ARGS",
    "SHAPE_DECODER_NAME",
    "SHAPE_ENCODER_NAME",
    "SS_DECODER_DIR",
    "SS_DECODER_NAME",
    "SS_ENCODER_NAME",
    "TEX_DECODER_NAME",
    "TEX_ENCODER_NAME",
    "TINY_COND_CHANNELS",
    "TINY_DECODER_BLOCKS",
    "TINY_DECODER_CHANNELS",
    "TINY_ENCODER_BLOCKS",
    "TINY_ENCODER_CHANNELS",
    "TINY_MODEL_CHANNELS",
    "TINY_NUM_BLOCKS",
    "TINY_NUM_HEADS",
    "TINY_POSTERIOR_STD",
    "TINY_SS_DECODER_CHANNELS",
    "TINY_SS_ENCODER_CHANNELS",
    "TINY_SS_OCCUPANCY",
    "TINY_SUBDIVIDED",
    "TRELLIS2_DIR",
    "decoder_args",
    "dit_args",
    "encoder_args",
    "released_models_map",
    "sphere_dual_grid",
    "sphere_pbr_attributes",
    "ss_encoder_args",
    "tiny_ss_decoder",
    "write_tiny_trellis2",
]
