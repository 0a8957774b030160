"""Benchmark of the full-size TRELLIS.2 VAE encoders with random weights (not a test; no weights needed).

Builds the shape and texture SC-VAE encoders and the sparse-structure encoder with the released checkpoint args
(`tests/data/trellis2_checkpoints.json`) and the reference mixed precision, then measures, each with its own
peak-memory window, what `know3d data build` runs per asset:

1. at each O-Voxel resolution (default 512 and 1024): the shape encoder on a flexible dual grid and the texture
   encoder on PBR attributes of the same voxels. The asset is a sphere shell of radius `--radius-frac` of the grid
   (about 1M active voxels at 512 and 4M at 1024 with the default 0.45; feature values are random, which does not
   change the work);
2. the sparse-structure encoder on a 64^3 occupancy grid.

Examples:
    python scripts/bench_encoders.py                       # CUDA, reference mixed precision, 512 and 1024
    python scripts/bench_encoders.py --smoke --device cpu  # tiny networks, small grids (checks the script runs)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import torch
from bench_gpu import measure

from know3d_cli.tiny.trellis2 import encoder_args, ss_encoder_args
from know3d_cli.trellis2.models import FlexiDualGridVaeEncoder, SparseStructureEncoder, SparseUnetVaeEncoder
from know3d_cli.trellis2.sparse.tensor import SparseTensor

MANIFEST = Path(__file__).resolve().parents[1] / "tests" / "data" / "trellis2_checkpoints.json"
RELEASED = {
    "shape": (FlexiDualGridVaeEncoder, "TRELLIS.2-4B/ckpts/shape_enc_next_dc_f16c32_fp16"),
    "tex": (SparseUnetVaeEncoder, "TRELLIS.2-4B/ckpts/tex_enc_next_dc_f16c32_fp16"),
    "ss": (SparseStructureEncoder, "TRELLIS-image-large/ckpts/ss_enc_conv3d_16l8_fp16"),
}
SS_RESOLUTION = 64
POINTS_PER_AREA = 8  # surface samples per voxel face: every voxel the sphere passes through gets hit


def build(name: str, device: torch.device, smoke: bool, exact: bool) -> torch.nn.Module:
    """A randomly initialised encoder with the released args (or the tiny test args with --smoke)."""
    cls, key = RELEASED[name]
    if smoke:
        args = ss_encoder_args() if name == "ss" else encoder_args(shape=name == "shape")
    else:
        args = json.loads(MANIFEST.read_text())["checkpoints"][key]["args"]
    with torch.device(device):
        model = cls(**args).eval()
    if not exact:
        model.convert_to_fp16()
    return model


def sphere_shell(resolution: int, radius_frac: float, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """(N, 4) int32 sorted coords (batch 0) of the voxels a centred sphere of radius `radius_frac * resolution`
    passes through, found by sampling its surface (no resolution^3 grid is ever built)."""
    radius = radius_frac * resolution
    count = int(POINTS_PER_AREA * 4 * math.pi * radius**2)
    directions = torch.randn(count, 3, generator=generator).to(device)
    points = resolution / 2 + radius * directions / directions.norm(dim=1, keepdim=True)
    xyz = points.floor().long().clamp_(0, resolution - 1)
    keys = torch.unique((xyz[:, 0] * resolution + xyz[:, 1]) * resolution + xyz[:, 2])  # sorted
    coords = torch.stack([torch.zeros_like(keys), keys // resolution**2, keys // resolution % resolution,
                          keys % resolution], dim=1)
    return coords.to(torch.int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--fp32", action="store_true", help="exact fp32 instead of the reference mixed precision")
    parser.add_argument("--smoke", action="store_true", help="tiny networks, grids of 32 and 64 (checks the script)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[512, 1024], help="O-Voxel grid sides")
    parser.add_argument("--radius-frac", type=float, default=0.45, help="sphere radius / grid side")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats per measurement (median reported)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or use --device cpu --smoke to check the script")
    exact = args.fp32 or device.type == "cpu"  # fp16 convolutions are very slow on CPUs
    resolutions = [32, 64] if args.smoke else args.resolutions
    ss_side = 32 if args.smoke else SS_RESOLUTION
    gen = torch.Generator().manual_seed(0)
    results: dict[str, dict[str, float]] = {}

    def record(name: str, seconds: float, peak: int, **extra: float) -> None:
        results[name] = {"seconds": round(seconds, 4), "peak_gib": round(peak / 2**30, 3), **extra}
        print(f"{name:24s} {seconds:9.3f} s   peak {peak / 2**30:7.2f} GiB   {extra or ''}", flush=True)

    with torch.inference_mode():
        encoders = {name: build(name, device, args.smoke, exact) for name in ("shape", "tex")}
        for res in resolutions:
            coords = sphere_shell(res, args.radius_frac, device, gen)
            n = len(coords)
            vertices = SparseTensor(torch.rand(n, 3, generator=gen).to(device), coords)
            flags = SparseTensor(torch.rand(n, 3, generator=gen).to(device) < 0.5, coords)
            attrs = SparseTensor(torch.rand(n, 6, generator=gen).to(device) * 2 - 1, coords)
            shape = encoders["shape"]
            seconds, peak, posterior = measure(device, lambda: shape(vertices, flags), repeat=args.repeat, warmup=1)
            record(f"shape_encoder_{res}", seconds, peak, voxels=n, latent_tokens=len(posterior.coords))
            tex = encoders["tex"]
            seconds, peak, _ = measure(device, lambda: tex(attrs), repeat=args.repeat, warmup=1)
            record(f"tex_encoder_{res}", seconds, peak, voxels=n)
        encoders = None  # free them before the next network is built

        ss = build("ss", device, args.smoke, exact)
        occupancy = torch.zeros(1, 1, ss_side, ss_side, ss_side, device=device)
        cells = sphere_shell(ss_side, args.radius_frac, device, gen).long()
        occupancy[0, 0, cells[:, 1], cells[:, 2], cells[:, 3]] = 1.0
        seconds, peak, posterior = measure(device, lambda: ss(occupancy), repeat=args.repeat, warmup=1)
        record("ss_encoder", seconds, peak, side=ss_side, occupied=len(cells), latent_side=posterior.mean.shape[-1])

    per_asset = {
        res: round(results[f"shape_encoder_{res}"]["seconds"] + results[f"tex_encoder_{res}"]["seconds"]
                   + results["ss_encoder"]["seconds"], 4)
        for res in resolutions
    }
    for res, seconds in per_asset.items():
        print(f"{f'per asset at {res}':24s} {seconds:9.3f} s   (shape + texture + sparse structure)")
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    summary = {"machine": machine, "torch": torch.__version__, "precision": "fp32" if exact else "reference",
               "smoke": args.smoke, "results": results, "per_asset_seconds": per_asset}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
