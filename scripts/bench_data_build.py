"""Benchmark `know3d data build` per asset, and which step dominates (not a test).

CPU mode (default): the real build code (`DatasetBuilder`: asset loading, O-Voxel, the three encoders, front/back
renders, DINOv3, the MLLM description, the editor tap for every prompt variant, the atomic write) with the tiny
random models on `--assets` procedural textured assets: a bumpy sphere of `--faces` triangles with a `--texture`
base-colour texture (`bench_ovoxel.bumpy_sphere_glb`), or a thin ring (`--shape ring`, a small O-Voxel). It reports
each step's mean seconds per asset (from the samples' `timings_s`), its share, wall time per asset and peak RSS. The
tiny networks make the model steps nearly free, so on a CPU this measures the geometry side; the GPU mode measures
the network side.

GPU mode (`--gpu`): what the network steps cost per asset at full size, with random weights in the released
architectures (no download needed): the three VAE encoders (released args, reference mixed precision) on the
benchmark asset's O-Voxel at `--resolution`, DINOv3 ViT-L/16 at 512 and 1024, and H_DiT extraction: the
Qwen-Image-Edit MMDiT (60 blocks, bf16) at `editor.resolution` with its condition image, one forward timed and
multiplied by the forwards a tap with `preview=none` runs (true CFG: 2 per step before the tap step, 1 at it), times
`--variants`. `--gpu --smoke --device cpu` runs the same code at tiny size.

`--compare-occupancy`: how far the 64^3 sparse-structure occupancy of a 512 build (the 512 O-Voxel pooled by 8) is
from the one upstream derives from the 1024 shape latent (the 1024 O-Voxel pooled by 16), on the benchmark asset.

Examples:
    python scripts/bench_data_build.py --assets 3 --json data_build_cpu.json
    python scripts/bench_data_build.py --gpu --json data_build_gpu.json
    python scripts/bench_data_build.py --smoke                     # CPU mode, seconds (checks the script runs)
    python scripts/bench_data_build.py --gpu --smoke --device cpu  # GPU code at tiny size on the CPU
    python scripts/bench_data_build.py --compare-occupancy --faces 100000
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_gpu import measure
from bench_ovoxel import bumpy_sphere_glb

STEPS = ("asset", "ovoxel", "encoders", "render", "dinov3", "mllm", "editor")


def ring_glb(path: Path, texture: int) -> None:
    """A thin textured torus (few voxels: a fast asset for smoke runs)."""
    import trimesh
    from PIL import Image
    from trimesh.visual.material import PBRMaterial

    ring = trimesh.creation.torus(0.4, 0.01, major_sections=48, minor_sections=6)
    s = np.linspace(0, 1, texture)
    pixels = np.stack(np.broadcast_arrays(128 + 127 * np.sin(20 * s)[None, :], 80 + 0 * s[:, None],
                                          200 + 0 * s[None, :], 255 + 0 * s[None, :]), -1).astype(np.uint8)
    uv = (ring.vertices[:, :2] - ring.vertices[:, :2].min(0)) / np.ptp(ring.vertices[:, :2], 0)
    ring.visual = trimesh.visual.TextureVisuals(uv=uv, material=PBRMaterial(baseColorTexture=Image.fromarray(pixels)))
    ring.export(path)


def benchmark_asset(path: Path, args) -> Path:
    """Write the benchmark asset of `args` (`--shape`, `--faces`, `--texture`) to `path`."""
    if args.shape == "ring":
        ring_glb(path, args.texture)
    else:
        bumpy_sphere_glb(path, args.faces, args.texture)
    return path


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# ------------------------------------------------------------------------------------------------ CPU
def run_cpu(args) -> dict:
    from know3d_cli.config import load_config
    from know3d_cli.data.build import DatasetBuilder
    from know3d_cli.data.sources import read_sources
    from know3d_cli.shard import ALL
    from know3d_cli.tiny import build_tiny_models

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = build_tiny_models(args.tiny_root or tmp / "tiny")
        assets = tmp / "assets"
        assets.mkdir()
        for i in range(args.assets):
            benchmark_asset(assets / f"asset-{i}.glb", args)
        cfg = load_config(["preset=tiny", f"models.tiny_root={tiny}", "runtime.device=cpu",
                           f"data.ovoxel.resolution={args.resolution}", f"data.views.size={args.render_size}",
                           f"data.prompts.variants={args.variants}", "data.text.source=auto"])
        builder = DatasetBuilder(cfg, tmp / "dataset", ALL)
        events = []
        start = time.perf_counter()
        summary = builder.run(read_sources(str(assets)), events.append)
        wall = time.perf_counter() - start
        if summary.ok != args.assets:
            raise SystemExit(f"the build failed: {[e for e in events if e['status'] != 'ok']}")
        records = [json.loads((tmp / "dataset" / "samples" / e["id"] / "sample.json").read_text()) for e in events]
    steps = {step: statistics.mean(r["timings_s"].get(step, 0.0) for r in records) for step in STEPS}
    total = sum(steps.values())
    return {
        "mode": "cpu", "assets": args.assets, "shape": args.shape, "faces": args.faces, "resolution": args.resolution,
        "render_size": args.render_size, "variants": args.variants, "threads": torch.get_num_threads(),
        "voxels": statistics.mean(r["ovoxel"]["voxels"] for r in records),
        "shape_tokens": statistics.mean(r["counts"]["N"] for r in records),
        "step_seconds": {k: round(v, 3) for k, v in steps.items()},
        "step_share": {k: round(v / total, 3) for k, v in steps.items()},
        "dominant": max(steps, key=steps.get),
        "wall_per_asset_s": round(wall / args.assets, 3),  # includes loading the (tiny) models once
        "peak_rss_gib": round(peak_rss_gib(), 3),
    }


# ------------------------------------------------------------------------------------------------ GPU
def run_gpu(args) -> dict:
    from know3d_cli.config import AssetConfig, OVoxelConfig
    from know3d_cli.data import asset_to_ovoxel, load_asset
    from know3d_cli.data.latents import dense_occupancy, ss_occupancy
    from know3d_cli.data.models import sparse
    from know3d_cli.editor.tap import tap_step_index

    device = torch.device(args.device)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        asset = load_asset(benchmark_asset(Path(tmp) / "asset.glb", args), AssetConfig())
    for resolution in args.gpu_resolutions:
        ovoxel = asset_to_ovoxel(asset, OVoxelConfig(resolution=resolution)).quantized()
        coords = ovoxel.batched_coords().to(device)
        shape, tex = (encoder(name, device, args.smoke) for name in ("shape", "tex"))
        with torch.no_grad():
            seconds, peak, out = measure(device, lambda: shape(sparse(ovoxel.offsets.to(device), coords),
                                                               sparse(ovoxel.intersected.to(device), coords)),
                                         args.repeat, 1)
            results[f"shape_encoder_{resolution}"] = {"seconds": seconds, "peak_gib": peak / 2**30,
                                                      "voxels": ovoxel.num_voxels, "latent_tokens": len(out.mean)}
            seconds, peak, _ = measure(device, lambda: tex(sparse(ovoxel.texture_features().to(device), coords)),
                                       args.repeat, 1)
            results[f"tex_encoder_{resolution}"] = {"seconds": seconds, "peak_gib": peak / 2**30}
            grid = dense_occupancy(ss_occupancy(ovoxel.coords, resolution)).to(device)
            ss = encoder("ss", device, args.smoke)
            seconds, peak, _ = measure(device, lambda: ss(grid), args.repeat, 1)
            results[f"ss_encoder_{resolution}"] = {"seconds": seconds, "peak_gib": peak / 2**30}
        del shape, tex, ss
    dino = dinov3(device, args.smoke)
    for side in (512, 1024):
        pixels = torch.randn(1, 3, side, side, device=device)
        with torch.no_grad():
            seconds, peak, _ = measure(device, lambda: dino(pixel_values=pixels, output_hidden_states=True),
                                       args.repeat, 1)
        results[f"dinov3_{side}"] = {"seconds": seconds, "peak_gib": peak / 2**30}
    del dino
    transformer, inputs, tokens = editor_transformer(device, args.smoke, args.editor_resolution)
    with torch.no_grad():
        seconds, peak, _ = measure(device, lambda: transformer(**inputs), args.repeat, 1)
    step = tap_step_index(0.25, 40)
    forwards = 2 * step + 1  # true CFG before the tap step, the conditional pass at it (preview=none)
    results["editor_forward"] = {"seconds": seconds, "peak_gib": peak / 2**30, "tokens": tokens}
    results["hdit_per_variant"] = {"seconds": seconds * forwards, "forwards": forwards}
    per_asset = {str(r): sum(results[f"{k}_encoder_{r}"]["seconds"] for k in ("shape", "tex", "ss"))
                 + results["dinov3_512"]["seconds"] + results["dinov3_1024"]["seconds"]
                 + args.variants * results["hdit_per_variant"]["seconds"] for r in args.gpu_resolutions}
    return {"mode": "gpu", "device": str(device), "smoke": args.smoke, "variants": args.variants,
            "results": results, "per_asset_seconds": per_asset,
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def encoder(name: str, device: torch.device, smoke: bool) -> torch.nn.Module:
    """A randomly initialised encoder with the released args (tiny ones with --smoke), reference precision."""
    from bench_encoders import build

    return build(name, device, smoke, exact=device.type == "cpu")


def dinov3(device: torch.device, smoke: bool):
    """DINOv3 ViT-L/16 (hidden 1024, 24 layers, 4 registers) with random weights, fp32 as generation runs it."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    size = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2) if smoke else \
        dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
    config = DINOv3ViTConfig(patch_size=16, num_register_tokens=4, layerscale_value=1e-5, **size)
    with torch.device(device):
        return DINOv3ViTModel(config).eval()


def editor_transformer(device: torch.device, smoke: bool, resolution: int):
    """The Qwen-Image-Edit MMDiT (released defaults of diffusers' `QwenImageTransformer2DModel`, `zero_cond_t` as
    2511) in bf16 with random weights, and one forward's inputs: the target grid and a condition image of the same
    size (1 MP for the Plus pipeline at 1024), 256 text tokens, batch 1."""
    from diffusers import QwenImageTransformer2DModel

    config = dict(num_layers=2, attention_head_dim=16, num_attention_heads=3, joint_attention_dim=16,
                  axes_dims_rope=(8, 4, 4)) if smoke else {}
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in bf16 directly: fp32 first would need 82 GB for the 20B parameters
    try:
        with torch.device(device):
            model = QwenImageTransformer2DModel(zero_cond_t=True, **config).eval()
    finally:
        torch.set_default_dtype(default)
    side = resolution // 16  # 8x VAE, 2x2 patches
    tokens = 2 * side * side
    text = 256
    inputs = {
        "hidden_states": torch.randn(1, tokens, model.config.in_channels, device=device, dtype=dtype),
        "encoder_hidden_states": torch.randn(1, text, model.config.joint_attention_dim, device=device, dtype=dtype),
        "encoder_hidden_states_mask": torch.ones(1, text, device=device, dtype=torch.long),
        "timestep": torch.full((1,), 0.75, device=device, dtype=dtype),
        "img_shapes": [[(1, side, side), (1, side, side)]],
        "return_dict": False,
    }
    return model, inputs, tokens + text


# ------------------------------------------------------------------------------------------------ occupancy
def compare_occupancy(args) -> dict:
    from know3d_cli.config import AssetConfig, OVoxelConfig
    from know3d_cli.data import asset_to_ovoxel, load_asset
    from know3d_cli.data.latents import ss_occupancy

    with tempfile.TemporaryDirectory() as tmp:
        asset = load_asset(benchmark_asset(Path(tmp) / "asset.glb", args), AssetConfig())
    cells = {}
    for resolution in (512, 1024):
        start = time.perf_counter()
        ovoxel = asset_to_ovoxel(asset, OVoxelConfig(resolution=resolution))
        cells[resolution] = {tuple(c) for c in ss_occupancy(ovoxel.coords, resolution).tolist()}
        print(f"O-Voxel {resolution}: {ovoxel.num_voxels} voxels in {time.perf_counter() - start:.1f} s")
    both = cells[512] & cells[1024]
    return {"mode": "occupancy", "shape": args.shape, "faces": args.faces, "cells_512": len(cells[512]),
            "cells_1024": len(cells[1024]), "only_512": len(cells[512] - cells[1024]),
            "only_1024": len(cells[1024] - cells[512]), "iou": round(len(both) / len(cells[512] | cells[1024]), 4)}


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="full-size network steps instead of the CPU build")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the script runs")
    parser.add_argument("--compare-occupancy", action="store_true", help="SS occupancy of a 512 vs a 1024 O-Voxel")
    parser.add_argument("--device", default="cuda", help="--gpu: where the networks run")
    parser.add_argument("--assets", type=int, default=3)
    parser.add_argument("--shape", choices=("sphere", "ring"), default="sphere")
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--texture", type=int, default=1024)
    parser.add_argument("--resolution", type=int, default=512, help="CPU: data.ovoxel.resolution")
    parser.add_argument("--gpu-resolutions", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--render-size", type=int, default=1024, help="CPU: data.views.size")
    parser.add_argument("--variants", type=int, default=4, help="K, prompt variants per asset")
    parser.add_argument("--editor-resolution", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--tiny-root", type=Path, default=None, help="CPU: reuse a tiny model set")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.smoke:
        args.assets, args.shape, args.texture, args.render_size, args.variants = 1, "ring", 16, 64, 2
        args.gpu_resolutions, args.editor_resolution, args.repeat = [512], 256, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.compare_occupancy:
        report = compare_occupancy(args)
    else:
        report = run_gpu(args) if args.gpu else run_cpu(args)
    report.update(smoke=args.smoke, total_seconds=round(time.perf_counter() - start, 2), machine=platform.machine(),
                  processor=platform.processor(), torch=torch.__version__)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
