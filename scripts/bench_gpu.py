"""GPU benchmark of the full-size TRELLIS.2 networks with random weights (not a test; no weights needed).

Builds every network with the released checkpoint args (`tests/data/trellis2_checkpoints.json`) and the reference
mixed precision, then measures, each with its own peak-memory window:

1. one `SparseStructureFlowModel` forward at 4096 tokens (16^3) with 1029 DINOv3 tokens;
2. stage 1: 12-step sampling with the released sampler settings (22 forwards) + the sparse-structure decoder;
3. the `1024_cascade` stages at realistic token counts (default: shape 10k LR then 30k HR, texture 30k), with the
   released samplers: shape LR, shape HR, texture, shape decoder (its subdivision heads forced to keep 3 of 8
   children, ~x3 voxels per level, as real assets do), texture decoder, and dual-grid mesh extraction.

The flows run in the released block dtype (bf16; the manifest keeps it beside the args, so it is added to them:
without it they ran fp32 at fp32 rate, the 10-20x gap of the first H200 run). Each single forward also reports its
dtype and achieved TFLOP/s from an approximate FLOP count. `--profile DIR` runs one forward of each measured flow
and each decoder under torch.profiler: top kernels by device time printed and saved, Chrome traces in DIR.

Every measured step is one public stage function of `know3d_cli.trellis2.stages` (the ones `Trellis2Pipeline`
chains), called on networks built here instead of loaded from checkpoint files.

Reference for comparison: the TRELLIS.2 paper reports ~17 s on an H100 for 1024 (10 s shape + 7 s material).

Examples:
    python scripts/bench_gpu.py                       # CUDA, bf16, realistic sizes
    python scripts/bench_gpu.py --smoke --device cpu  # tiny networks, seconds on a CPU (checks the script runs)
    python scripts/bench_gpu.py --profile prof/       # + top kernels and Chrome traces of single forwards
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
from know3d_cli.trellis2.sparse import SparseTensor
from know3d_cli.trellis2.sparse.spatial import child_offsets
from know3d_cli.trellis2.stages import (
    ImageCondition,
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
FLOWS = (SparseStructureFlowModel, SLatFlowModel)
RELEASED_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# Forced subdivisions of the shape decoder: 3 of 8 children per level (~x3 voxels per level, as real assets do),
# then, at the last level, the 4 children of one face of each cell (local x = 0), so that the four voxels around
# each of their x-edges exist and the mesh has quads (a fixed 3-child pattern can never complete one).
KEPT_CHILDREN = 3


def network_args(name: str, smoke: bool) -> dict:
    """Constructor args: the released ones (with the flows' block dtype), or the tiny test args with --smoke."""
    cls, key, role = RELEASED[name]
    if smoke:
        return (ss_decoder_args() if name == "ss_decoder" else
                decoder_args(shape=role == "shape") if name.endswith("decoder") else dit_args(role))
    entry = json.loads(MANIFEST.read_text())["checkpoints"][key]
    args = dict(entry["args"])
    if cls in FLOWS:  # the manifest keeps the file dtype beside `args`; the released json has it in them
        args.setdefault("dtype", RELEASED_DTYPES[entry["dtype"]])
    return args


def build(name: str, device: torch.device, smoke: bool, exact: bool) -> torch.nn.Module:
    """A randomly initialised network (`network_args`) in the reference mixed precision, or fp32 when `exact`."""
    cls = RELEASED[name][0]
    args = network_args(name, smoke)
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


def forward_flops(model: torch.nn.Module, tokens: int, context_tokens: int) -> float:
    """Approximate FLOPs of one flow forward: the block Linears (2 x weights x tokens, the cross-attention's
    key/value projection over the context tokens instead) and the attention products (4 L^2 C self, 4 L M C cross)."""
    channels = model.blocks[0].self_attn.to_qkv.in_features
    flops = 0.0
    for block in model.blocks:
        for name, layer in block.named_modules():
            if isinstance(layer, torch.nn.Linear):
                flops += 2 * layer.weight.numel() * (context_tokens if name.endswith("to_kv") else tokens)
        flops += 4 * tokens * tokens * channels + 4 * tokens * context_tokens * channels
    return flops


def profile(name: str, device: torch.device, fn: Callable[[], object], out_dir: Path, rows: int = 20) -> list[dict]:
    """One call of `fn` (after a warm-up call) under torch.profiler. Prints the top operators and kernels by self
    device time (CPU time on a CPU), writes that table to `<out_dir>/<name>.txt` and a Chrome trace to
    `<out_dir>/<name>.json` (open in ui.perfetto.dev or chrome://tracing); returns the top rows."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = device.type == "cuda"
    fn()
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with torch_profile(activities=activities, record_shapes=True) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize(device)
    sort_by = "self_device_time_total" if cuda else "self_cpu_time_total"
    averages = prof.key_averages()
    table = averages.table(sort_by=sort_by, row_limit=rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.txt").write_text(table + "\n")
    prof.export_chrome_trace(str(out_dir / f"{name}.json"))
    print(f"--- profile of {name} (top {rows} by {sort_by}; trace {out_dir / f'{name}.json'})\n{table}", flush=True)
    top = sorted(averages, key=lambda e: getattr(e, sort_by), reverse=True)[:rows]
    return [{"name": e.key, "calls": e.count, "self_ms": round(getattr(e, sort_by) / 1000, 3)} for e in top]


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


def force_surface(shape_decoder: FlexiDualGridVaeDecoder, device: torch.device) -> None:
    """Make random weights decode a realistic number of voxels that mesh into a surface: fixed subdivision logits
    (see `KEPT_CHILDREN`) and every edge flag set (the four voxels around an edge still decide whether it makes a
    quad)."""
    levels = [blocks[-1].to_subdiv for blocks in shape_decoder.blocks[:-1]]
    x_offset = child_offsets(device)[:, 0]
    for index, head in enumerate(levels):
        keep = x_offset == 0 if index == len(levels) - 1 else torch.arange(8, device=device) < KEPT_CHILDREN
        head.weight.zero_()
        head.bias.copy_(torch.where(keep, 1.0, -1.0))
    shape_decoder.output_layer.bias[3:6] = 10.0  # edge-intersection logits: > 0 everywhere


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--fp32", action="store_true", help="exact fp32 instead of the reference mixed precision")
    parser.add_argument("--smoke", action="store_true", help="tiny networks and token counts (checks the script)")
    parser.add_argument("--shape-lr-tokens", type=int, default=10_000)
    parser.add_argument("--shape-hr-tokens", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=5, help="repeats of the single-forward measurement")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="profile one forward of each flow and the decoders with torch.profiler: top kernels "
                             "by device time printed and saved, Chrome traces written to DIR")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or use --device cpu --smoke to check the script")
    exact = args.fp32 or device.type == "cpu"  # fp16 convolutions are very slow on CPUs
    lr_tokens, hr_tokens = (300, 450) if args.smoke else (args.shape_lr_tokens, args.shape_hr_tokens)
    cond_tokens = {512: 1 + 4 + 32**2, 1024: 1 + 4 + 64**2}
    gen = torch.Generator().manual_seed(0)
    results: dict[str, dict[str, float]] = {}

    def record(name: str, seconds: float, peak: int, **extra: float) -> None:
        results[name] = {"seconds": round(seconds, 4), "peak_gib": round(peak / 2**30, 3), **extra}
        print(f"{name:28s} {seconds:9.3f} s   peak {peak / 2**30:7.2f} GiB   {extra or ''}", flush=True)

    profiles: dict[str, list[dict]] = {}

    def profiled(name: str, fn: Callable[[], object]) -> None:
        if args.profile is not None:
            profiles[name] = profile(name, device, fn, args.profile)

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
        flops = forward_flops(flow, side**3, cond_tokens[512])
        record("ss_flow_forward", seconds, peak, tokens=side**3, dtype=str(flow.compute_dtype),
               tflops=round(flops / seconds / 1e12, 2))
        profiled("ss_flow_forward", lambda: flow(x, t, c512.views[0]))
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
            if name == "shape_1024":  # one forward at the HR token count, as for stage 1
                noisy = SparseTensor(torch.randn(len(coords), flow.in_channels, generator=gen), coords).to(device)
                cond = image(flow, res).views[0]
                seconds, peak, _ = measure(device, lambda: flow(noisy, t, cond), repeat=args.repeat, warmup=1)
                flops = forward_flops(flow, len(coords), cond_tokens[res])
                record(f"{name}_forward", seconds, peak, tokens=len(coords), dtype=str(flow.compute_dtype),
                       tflops=round(flops / seconds / 1e12, 2))
                profiled(f"{name}_forward", lambda: flow(noisy, t, cond))
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
        force_surface(shape_decoder, device)
        final_res = 1024
        seconds, peak, voxels = measure(device, lambda: decode_shape(shape_decoder, shape.latent, final_res))
        record("shape_decoder", seconds, peak, voxels=len(voxels.grid.coords))
        profiled("shape_decoder", lambda: decode_shape(shape_decoder, shape.latent, final_res))
        shape_decoder = None
        seconds, peak, (vertices, faces) = measure(device, lambda: shape_mesh(voxels))
        record("mesh_extraction", seconds, peak, faces=len(faces))
        tex_decoder = build("tex_decoder", device, args.smoke, exact)
        seconds, peak, _ = measure(device, lambda: decode_texture(tex_decoder, tex.latent, voxels))
        record("tex_decoder", seconds, peak)
        profiled("tex_decoder", lambda: decode_texture(tex_decoder, tex.latent, voxels))
    if not len(faces):
        raise SystemExit("mesh_extraction made no faces: the forced-surface benchmark input is broken")

    stages = ("ss_sampling", "ss_decoder", "shape_512_sampling", "shape_1024_sampling", "tex_1024_sampling",
              "shape_decoder", "tex_decoder", "mesh_extraction")
    total = sum(results[name]["seconds"] for name in stages)
    peak = max(results[name]["peak_gib"] for name in stages)
    print(f"{'total (1024_cascade)':28s} {total:9.3f} s   max stage peak {peak:.2f} GiB")
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    summary = {"machine": machine, "torch": torch.__version__, "precision": "fp32" if exact else "reference",
               "smoke": args.smoke, "results": results, "total_seconds": round(total, 3),
               "max_stage_peak_gib": peak if math.isfinite(peak) else None, "profiles": profiles}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
