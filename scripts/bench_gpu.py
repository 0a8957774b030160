"""GPU benchmark of the full-size TRELLIS.2 networks with random weights (not a test; no weights needed).

Builds every network with the released checkpoint args (`tests/data/trellis2_checkpoints.json`) and the reference
mixed precision, then measures, each with its own peak-memory window:

1. one `SparseStructureFlowModel` forward at 4096 tokens (16^3) with 1029 DINOv3 tokens;
2. stage 1: 12-step sampling with the released sampler settings (22 forwards) + the sparse-structure decoder;
3. the `1024_cascade` stages at realistic token counts (default: shape 10k LR then 30k HR, texture 30k), with the
   released samplers: shape LR, shape HR, texture, shape decoder (its subdivision heads forced to keep 3 of 8
   children, ~x3 voxels per level, as real assets do), texture decoder, and dual-grid mesh extraction.

Every measured step is one public stage function of `know3d_cli.trellis2.stages` (the ones `Trellis2Pipeline`
chains), called on networks built here instead of loaded from checkpoint files.

Reference for comparison: the TRELLIS.2 paper reports ~17 s on an H100 for 1024 (10 s shape + 7 s material).

Examples:
    python scripts/bench_gpu.py                       # CUDA, bf16, realistic sizes
    python scripts/bench_gpu.py --smoke --device cpu  # tiny networks, seconds on a CPU (checks the script runs)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from know3d_cli.errors import GenerationError
from know3d_cli.tiny.trellis2 import (
    RELEASED_PIPELINE_ARGS,
    decoder_args,
    dit_args,
    released_models_map,
    ss_decoder_args,
)
from know3d_cli.trellis2.cascade import LatentNormalization
from know3d_cli.trellis2.models import (
    FlexiDualGridVaeDecoder,
    SLatFlowModel,
    SparseStructureDecoder,
    SparseStructureFlowModel,
    SparseUnetVaeDecoder,
)
from know3d_cli.trellis2.pipeline_spec import PIPELINE_NAME, PipelineSpec, parse_pipeline_spec
from know3d_cli.trellis2.stages import (
    ImageCondition,
    ShapeVoxels,
    decode_shape,
    decode_sparse_structure,
    decode_texture,
    sample_shape_latent,
    sample_sparse_structure,
    sample_texture_latent,
    shape_mesh,
)

MANIFEST = Path(__file__).resolve().parents[1] / "tests" / "data" / "trellis2_checkpoints.json"
CKPT = "TRELLIS.2-4B/ckpts/"
RELEASED = {
    "ss_flow": (SparseStructureFlowModel, CKPT + "ss_flow_img_dit_1_3B_64_bf16", "sparse_structure_flow_model"),
    "shape_512": (SLatFlowModel, CKPT + "slat_flow_img2shape_dit_1_3B_512_bf16", "shape_slat_flow_model_512"),
    "shape_1024": (SLatFlowModel, CKPT + "slat_flow_img2shape_dit_1_3B_1024_bf16", "shape_slat_flow_model_1024"),
    "tex_1024": (SLatFlowModel, CKPT + "slat_flow_imgshape2tex_dit_1_3B_1024_bf16", "tex_slat_flow_model_1024"),
    "ss_decoder": (SparseStructureDecoder, "TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16", None),
    "shape_decoder": (FlexiDualGridVaeDecoder, CKPT + "shape_dec_next_dc_f16c32_fp16", "shape"),
    "tex_decoder": (SparseUnetVaeDecoder, CKPT + "tex_dec_next_dc_f16c32_fp16", "tex"),
}
KEPT_CHILDREN = 3  # of 8: the forced subdivision rate of the shape decoder


def build(name: str, device: torch.device, smoke: bool, exact: bool) -> torch.nn.Module:
    """A randomly initialised network with the released args (or the tiny test args with --smoke)."""
    cls, key, role = RELEASED[name]
    if smoke:
        args = (ss_decoder_args() if name == "ss_decoder" else
                decoder_args(shape=role == "shape") if name.endswith("decoder") else dit_args(role))
    else:
        args = json.loads(MANIFEST.read_text())["checkpoints"][key]["args"]
    with torch.device(device):
        model = cls(**args).eval()
        for param in model.parameters():  # adaLN-Zero / zero output layers would skip work in some kernels
            if not param.any():
                torch.nn.init.normal_(param, std=0.02)
    if hasattr(model, "apply_precision_policy"):
        model.apply_precision_policy(torch.float32 if exact else model.reference_dtype)
        if hasattr(model, "init_buffers"):
            model.init_buffers(device)
    elif not exact and getattr(model, "use_fp16", False):
        model.convert_to_fp16()
    return model


def measure(device: torch.device, fn: Callable[[], object], repeat: int = 1, warmup: int = 0) -> tuple[float, int, object]:
    """(median seconds, peak bytes, last result) of `fn` on `device`."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return sorted(times)[len(times) // 2], peak, out


def random_coords(tokens: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """(N, 4) int32 unique sorted coords: a random subset of a centred ball in a side^3 grid."""
    axis = torch.arange(side)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    radius = side / 2 - 0.5
    ball = grid[((grid - radius) ** 2).sum(1) <= radius**2]
    pick = ball[torch.randperm(len(ball), generator=generator)[: min(tokens, len(ball))]]
    coords = torch.cat([torch.zeros(len(pick), 1, dtype=torch.int64), pick], 1)
    return torch.unique(coords, dim=0).int()


def released_spec() -> PipelineSpec:
    """The released `pipeline.json` (sampler settings, latent normalisations)."""
    released = {"name": PIPELINE_NAME, "args": {"models": released_models_map(), **RELEASED_PIPELINE_ARGS}}
    return parse_pipeline_spec(released, Path("released pipeline.json"))


def mesh_or_empty(voxels: ShapeVoxels) -> tuple[torch.Tensor, torch.Tensor]:
    """`shape_mesh`, or an empty mesh where random weights decode to no surface at all (seen with --smoke)."""
    try:
        return shape_mesh(voxels)
    except GenerationError:
        return torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--fp32", action="store_true", help="exact fp32 instead of the reference mixed precision")
    parser.add_argument("--smoke", action="store_true", help="tiny networks and token counts (checks the script)")
    parser.add_argument("--shape-lr-tokens", type=int, default=10_000)
    parser.add_argument("--shape-hr-tokens", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=5, help="repeats of the single-forward measurement")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or use --device cpu --smoke to check the script")
    exact = args.fp32 or device.type == "cpu"  # fp16 convolutions are very slow on CPUs
    lr_tokens, hr_tokens = (300, 600) if args.smoke else (args.shape_lr_tokens, args.shape_hr_tokens)
    cond_tokens = {512: 1 + 4 + 32**2, 1024: 1 + 4 + 64**2}
    gen = torch.Generator().manual_seed(0)
    results: dict[str, dict[str, float]] = {}

    def record(name: str, seconds: float, peak: int, **extra: float) -> None:
        results[name] = {"seconds": round(seconds, 4), "peak_gib": round(peak / 2**30, 3), **extra}
        print(f"{name:28s} {seconds:9.3f} s   peak {peak / 2**30:7.2f} GiB   {extra or ''}", flush=True)

    def image(model, res) -> ImageCondition:
        return ImageCondition((torch.randn(1, cond_tokens[res], model.cond_channels, generator=gen).to(device),), res)

    spec = released_spec()
    shape_norm = LatentNormalization.from_spec(spec.shape_slat_normalization)
    tex_norm = LatentNormalization.from_spec(spec.tex_slat_normalization)
    with torch.inference_mode():
        # ---- stage 1
        flow = build("ss_flow", device, args.smoke, exact)
        side = flow.resolution
        x = torch.randn(1, flow.in_channels, side, side, side, generator=gen).to(device)
        c512 = image(flow, 512)
        t = torch.full((1,), 500.0, device=device)
        seconds, peak, _ = measure(device, lambda: flow(x, t, c512.views[0]), repeat=args.repeat, warmup=1)
        record("ss_flow_forward", seconds, peak, tokens=side**3)
        seconds, peak, ss = measure(device, lambda: sample_sparse_structure(flow, c512, spec.sparse_structure_sampler,
                                                                            gen))
        record("ss_sampling", seconds, peak, forwards=ss.forwards)
        flow = None  # free it before the next stage is built
        decoder = build("ss_decoder", device, args.smoke, exact)
        seconds, peak, _ = measure(device, lambda: decode_sparse_structure(decoder, ss.latent))
        record("ss_decoder", seconds, peak)
        decoder = None

        # ---- stage 2: LR, then HR shape (realistic token counts on random coords)
        for name, tokens, side, res in (("shape_512", lr_tokens, 32, 512), ("shape_1024", hr_tokens, 64, 1024)):
            flow = build(name, device, args.smoke, exact)
            coords = random_coords(tokens, side, gen)
            seconds, peak, shape = measure(device, lambda: sample_shape_latent(
                flow, coords, image(flow, res), spec.shape_slat_sampler, shape_norm, gen))
            record(f"{name}_sampling", seconds, peak, tokens=shape.tokens, forwards=shape.forwards)
            flow = None  # free it before the next stage is built

        # ---- stage 3: texture on the HR coords
        flow = build("tex_1024", device, args.smoke, exact)
        seconds, peak, tex = measure(device, lambda: sample_texture_latent(
            flow, shape.latent, image(flow, 1024), spec.tex_slat_sampler, shape_norm, tex_norm, gen))
        record("tex_1024_sampling", seconds, peak, tokens=tex.tokens, forwards=tex.forwards)
        flow = None  # free it before the next stage is built

        # ---- decoding and mesh extraction
        shape_decoder = build("shape_decoder", device, args.smoke, exact)
        for blocks in shape_decoder.blocks[:-1]:
            head = blocks[-1].to_subdiv
            head.weight.zero_()
            head.bias.copy_(torch.where(torch.arange(8, device=device) < KEPT_CHILDREN, 1.0, -1.0))
        final_res = 1024
        seconds, peak, voxels = measure(device, lambda: decode_shape(shape_decoder, shape.latent, final_res))
        record("shape_decoder", seconds, peak, voxels=len(voxels.grid.coords))
        shape_decoder = None
        seconds, peak, (vertices, faces) = measure(device, lambda: mesh_or_empty(voxels))
        record("mesh_extraction", seconds, peak, faces=len(faces))
        tex_decoder = build("tex_decoder", device, args.smoke, exact)
        seconds, peak, _ = measure(device, lambda: decode_texture(tex_decoder, tex.latent, voxels))
        record("tex_decoder", seconds, peak)

    stages = ("ss_sampling", "ss_decoder", "shape_512_sampling", "shape_1024_sampling", "tex_1024_sampling",
              "shape_decoder", "tex_decoder", "mesh_extraction")
    total = sum(results[name]["seconds"] for name in stages)
    peak = max(results[name]["peak_gib"] for name in stages)
    print(f"{'total (1024_cascade)':28s} {total:9.3f} s   max stage peak {peak:.2f} GiB")
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    summary = {"machine": machine, "torch": torch.__version__, "precision": "fp32" if exact else "reference",
               "smoke": args.smoke, "results": results, "total_seconds": round(total, 3),
               "max_stage_peak_gib": peak if math.isfinite(peak) else None}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
