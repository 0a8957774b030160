"""A synthetic training dataset in the layout of `know3d_cli/data/schema.py`, made with the tiny models.

For tests and the CPU training benchmark (`know3d data build` makes real ones); written by the same
`DatasetWriter`, so both follow one layout. Shapes are the real ones for the tiny
models: the 8 x 16^3 sparse-structure latent; the occupancy is the tiny sparse-structure decoder's output for that
latent (so validation previews compare like with like); shape coordinates are the occupancy pooled to the latent
grid of `shape_resolution`; features, DINOv3 tokens and editor hidden states are random with the statistics of the
real ones (normalised latents ~ N(0, 1), layer-normed tokens). front.png / back.png are drawn: a coloured body seen
from the front, and from behind with a part (a handle) that only the back shows.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..data.schema import SCHEMA_VERSION
from ..data.writer import DatasetWriter, Sample
from ..mllm.prompt import P_VIEW
from ..shard import ALL
from ..trellis2.checkpoint import Precision, load_model
from .dinov3 import TINY_DINOV3_HIDDEN, TINY_DINOV3_REGISTERS
from .editor import TINY_EDITOR_HIDDEN
from .trellis2 import RELEASED_PIPELINE_ARGS, SS_DECODER_DIR, SS_DECODER_NAME

logger = logging.getLogger(__name__)

TINY_EDITOR_GRID = (8, 8)  # token grid the tiny editor taps at editor.resolution=64
IMAGE_SIDE = 64  # side of the synthetic renders
_PARTS = ("a round handle", "a zipper pocket", "two straps", "a fin")


def dino_tokens(side: int) -> int:
    """DINOv3 tokens of a side x side image: CLS + registers + (side / 16)^2 patches."""
    return 1 + TINY_DINOV3_REGISTERS + (side // 16) ** 2


def write_synthetic_dataset(
    path: Path,
    tiny_root: Path,
    num_samples: int = 4,
    seed: int = 0,
    shape_resolution: int = 512,
    variants: int = 2,
    dino_1024: bool = False,
    shape_tokens: int | None = None,
) -> Path:
    """Write `num_samples` synthetic samples under `path` (replacing what is there).

    Args:
        path: the dataset folder.
        tiny_root: the tiny model set (`build_tiny_models`); its sparse-structure decoder makes the occupancy.
        num_samples: samples written.
        seed: seed of every random tensor and drawing.
        shape_resolution: 512 (32^3 shape latent grid) or 1024 (64^3).
        variants: K, prompt variants (hdit rows) per sample.
        dino_1024: also write `dino_1024` tokens (needed by the shape_1024 stage).
        shape_tokens: keep exactly this many shape-latent voxels per sample (a seeded subset, in order), for fast
            and equal-sized test batches; None keeps every voxel of the pooled occupancy.

    Returns:
        `path`.
    """
    if shape_resolution not in (512, 1024):
        raise ValueError(f"shape_resolution must be 512 or 1024, got {shape_resolution}")
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    decoder = load_model(Path(tiny_root) / SS_DECODER_DIR / "ckpts" / SS_DECODER_NAME, precision=Precision.fp32)
    norms = {name: RELEASED_PIPELINE_ARGS[f"{name}_slat_normalization"] for name in ("shape", "tex")}
    generator = torch.Generator().manual_seed(seed)
    info = {"schema_version": SCHEMA_VERSION, "shape_resolution": shape_resolution, "synthetic": True,
            "models": {"tiny_root": str(tiny_root)}, "settings": {"seed": seed, "variants": variants}}
    writer = DatasetWriter(path, ALL, info)
    for i in range(num_samples):
        sample_id = f"synthetic-{i:04d}"
        ss_latent = torch.randn(8, 16, 16, 16, generator=generator)
        with torch.no_grad():
            occupied = decoder(ss_latent[None])[0, 0] > 0  # (64, 64, 64)
        grid = shape_resolution // 16
        pooled = F.max_pool3d(occupied[None, None].float(), 64 // grid)[0, 0] > 0
        shape_coords = torch.argwhere(pooled).int()
        if shape_tokens is not None:
            if len(shape_coords) < shape_tokens:
                raise ValueError(f"sample {i} has {len(shape_coords)} shape voxels, fewer than shape_tokens")
            keep = torch.randperm(len(shape_coords), generator=generator)[:shape_tokens].sort().values
            shape_coords = shape_coords[keep]
        shape_coords = shape_coords.contiguous()
        latents = {
            "occupancy": torch.argwhere(occupied).int().contiguous(),
            "ss_latent": ss_latent,
            "shape_coords": shape_coords,
            "shape_feats": _denormalised(len(shape_coords), norms["shape"], generator),
            "tex_feats": _denormalised(len(shape_coords), norms["tex"], generator),
        }
        conditions = {
            "dino_512": torch.randn(dino_tokens(512), TINY_DINOV3_HIDDEN, generator=generator).half(),
            "hdit": torch.randn(variants, *TINY_EDITOR_GRID, TINY_EDITOR_HIDDEN, generator=generator).bfloat16(),
        }
        if dino_1024:
            conditions["dino_1024"] = torch.randn(dino_tokens(1024), TINY_DINOV3_HIDDEN,
                                                  generator=generator).half()
        part = _PARTS[i % len(_PARTS)]
        prompts = [f"{P_VIEW} {part}", P_VIEW][:variants] + [f"{P_VIEW} {part}, seen from behind"] * (variants - 2)
        colour = tuple(int(c) for c in torch.randint(40, 220, (3,), generator=generator))
        source = f"synthetic://{i}"
        writer.write(Sample(sample_id, source, hashlib.sha256(source.encode()).hexdigest(), latents, conditions,
                            _render(colour, None), _render(colour, part), tuple(prompts),
                            {"camera": {"azimuth_deg": 0.0}, "caption_parts": [part]}))
    logger.debug("wrote %d synthetic samples to %s", num_samples, path)
    return path


def _denormalised(count: int, norm: dict, generator: torch.Generator) -> torch.Tensor:
    """(count, 32) features whose normalised values are N(0, 1)."""
    return torch.randn(count, len(norm["mean"]), generator=generator) * torch.tensor(norm["std"]) + torch.tensor(
        norm["mean"])


def _render(colour: tuple[int, int, int], part: str | None) -> Image.Image:
    """A 64 x 64 RGBA picture of a rounded body; from behind, with the named part drawn on it."""
    image = Image.new("RGBA", (IMAGE_SIDE, IMAGE_SIDE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle([16, 12, 48, 56], radius=6, fill=(*colour, 255))
    if part is not None:
        draw.ellipse([26, 22, 38, 40], outline=(255 - colour[0], 255 - colour[1], 255 - colour[2], 255), width=3)
    return image


__all__ = ["IMAGE_SIDE", "TINY_EDITOR_GRID", "dino_tokens", "write_synthetic_dataset"]
