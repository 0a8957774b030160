"""Training throughput benchmark (not a test).

CPU mode (`--cpu`): the real `know3d train` loop (data loading, per-sample noise, forward, backward, AdamW, EMA) on the
tiny random models and a synthetic dataset in the schema layout, for the `ss` and `shape_512` stages of the adapter;
reports training samples/s (median over the steps after the warm-up).

GPU mode (`--gpu`): one full-size Know3D adapter training step on the released flow architectures (random weights:
no checkpoint needed) at `ss` (16^3 = 4096 tokens, 1029 DINOv3 tokens) and `shape_1024` (`--shape-tokens` voxels per
sample, 4101 DINOv3 tokens), batch 8, bf16 autocast over fp32 adapter weights, gradient checkpointing, a full-size
adapter on every block fed a 64 x 64 grid of 3072-channel editor tokens; reports the step time, the peak CUDA memory
and the GPU-hours one epoch over 50k assets takes. `--gpu --smoke --device cpu` runs the same code at tiny size.

Examples:
    python scripts/bench_train.py --cpu --threads 2 --json train_cpu.json
    python scripts/bench_train.py --gpu --json train_gpu.json
    python scripts/bench_train.py --gpu --smoke --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

MANIFEST = Path(__file__).resolve().parents[1] / "tests" / "data" / "trellis2_checkpoints.json"
RELEASED = {
    "ss": ("TRELLIS.2-4B/ckpts/ss_flow_img_dit_1_3B_64_bf16", "sparse_structure_flow_model"),
    "shape_1024": ("TRELLIS.2-4B/ckpts/slat_flow_img2shape_dit_1_3B_1024_bf16", "shape_slat_flow_model_1024"),
}
DINO_TOKENS = {"ss": 1 + 4 + 32**2, "shape_1024": 1 + 4 + 64**2}
ASSETS = 50_000


# ------------------------------------------------------------------------------------------------ CPU
def bench_cpu(args) -> dict:
    from know3d_cli.config import load_config
    from know3d_cli.tiny import build_tiny_models
    from know3d_cli.tiny.dataset import write_synthetic_dataset
    from know3d_cli.train import run_training

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="know3d-bench-train-"))
    root = build_tiny_models(Path(args.tiny_root) if args.tiny_root else work / "tiny")
    dataset = write_synthetic_dataset(work / "dataset", root, num_samples=args.samples)
    results = {}
    for stage in ("ss", "shape_512"):
        records: list[dict] = []
        cfg = load_config(["preset=tiny", f"models.tiny_root={root}", f"train={stage}", f"train.dataset={dataset}",
                           f"train.output_dir={work / stage}", f"train.steps={args.steps}",
                           f"train.batch_size={args.batch}", "train.log_every=1", "train.validation.every=0",
                           "train.tensorboard=false", f"train.checkpoint_every={args.steps}", "runtime.device=cpu"])
        start = time.perf_counter()
        run_training(cfg, emit=records.append)
        wall = time.perf_counter() - start
        rates = [r["samples_per_s"] for r in records if r["event"] == "train"][args.warmup:]
        tokens = records[0]["samples"]
        results[stage] = {"samples_per_s": round(statistics.median(rates), 3), "steps": args.steps,
                          "batch": args.batch, "wall_seconds": round(wall, 2), "dataset_samples": tokens}
        print(f"{stage:12s} {results[stage]['samples_per_s']:8.3f} samples/s  (batch {args.batch}, "
              f"{args.steps} steps, {wall:.1f} s wall incl. loading)", flush=True)
    return {"mode": "cpu", "threads": args.threads, "machine": platform.processor() or platform.machine(),
            "results": results}


# ------------------------------------------------------------------------------------------------ GPU
def build_module(stage: str, device: torch.device, smoke: bool):
    """Full-size (or tiny) flow, frozen in the reference precision, with a fresh full-size (or tiny) adapter."""
    from know3d_cli.tiny.trellis2 import dit_args
    from know3d_cli.train.models import Know3dAdapter
    from know3d_cli.train.network import FlowTrainingModule
    from know3d_cli.trellis2.models import SLatFlowModel, SparseStructureFlowModel

    key, role = RELEASED[stage]
    args = dit_args(role) if smoke else json.loads(MANIFEST.read_text())["checkpoints"][key]["args"]
    cls = SparseStructureFlowModel if stage == "ss" else SLatFlowModel
    with torch.device(device):
        flow = cls(**args)
        flow.apply_precision_policy(torch.float32 if device.type == "cpu" else flow.reference_dtype)
        adapter = Know3dAdapter(ext_channels=48 if smoke else 3072, proj_channels=32 if smoke else 1024,
                                model_channels=flow.model_channels, num_heads=flow.num_heads,
                                blocks=range(flow.num_blocks), pool=1)
    return FlowTrainingModule(flow, adapter, gradient_checkpointing=True)


def gpu_inputs(stage: str, module, batch: int, tokens: int, device: torch.device, smoke: bool):
    from know3d_cli.train.batch import ModelInputs
    from know3d_cli.train.flow_matching import FlowMatching
    from know3d_cli.train_config import TimeSchedule

    gen = torch.Generator().manual_seed(0)
    flow = module.flow
    objective = FlowMatching(1e-5, TimeSchedule.logit_normal, 1.0, 1.0)
    t = torch.rand(batch, generator=gen)
    grid = 8 if smoke else 64
    cond_tokens = 40 if smoke else DINO_TOKENS[stage]
    cond = torch.randn(batch, cond_tokens, flow.cond_channels, generator=gen)
    ext = torch.randn(batch, grid, grid, module.adapter.ext_channels, generator=gen).bfloat16()
    if stage == "ss":
        side = flow.resolution
        x0 = torch.randn(batch, flow.in_channels, side, side, side, generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        coords, rows, t_b = None, None, t.view(-1, 1, 1, 1, 1)
    else:
        side = 16 if smoke else 64
        parts = []
        for b in range(batch):
            pick = torch.randperm(side**3, generator=gen)[:tokens].sort().values
            xyz = torch.stack([pick // side**2, pick // side % side, pick % side], 1)
            parts.append(torch.cat([torch.full((tokens, 1), b), xyz], 1))
        coords = torch.cat(parts).int()
        x0 = torch.randn(len(coords), flow.in_channels, generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        rows = [slice(b * tokens, (b + 1) * tokens) for b in range(batch)]
        t_b = t.repeat_interleave(tokens)[:, None]
    none = torch.zeros(batch, dtype=torch.bool)
    inputs = ModelInputs(objective.diffuse(x0, noise, t_b).to(device), t.to(device),
                         objective.target(x0, noise).to(device), cond.to(device), ext.to(device),
                         None if coords is None else coords.to(device), rows, none, none)
    return objective, inputs


def bench_gpu(args) -> dict:
    from know3d_cli.train.flow_matching import training_loss

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or use --gpu --smoke --device cpu")
    tokens = 64 if args.smoke else args.shape_tokens
    results = {}
    for stage in ("ss", "shape_1024"):
        module = build_module(stage, device, args.smoke).train()
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.01)
        objective, inputs = gpu_inputs(stage, module, args.batch, tokens, device, args.smoke)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

        def step():
            with autocast:
                loss, _ = training_loss(module, objective, inputs)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return float(loss.detach())

        for _ in range(args.warmup):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            loss = step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
        epoch_hours = ASSETS / args.batch * seconds / 3600
        results[stage] = {"step_seconds": round(seconds, 4), "peak_gib": round(peak, 2), "batch": args.batch,
                          "tokens_per_sample": module.flow.resolution**3 if stage == "ss" else tokens,
                          "loss": round(loss, 4), "gpu_hours_per_epoch_50k": round(epoch_hours, 2),
                          "trainable_params": sum(p.numel() for p in params)}
        print(f"{stage:12s} step {seconds:8.3f} s   peak {peak:7.2f} GiB   one epoch over {ASSETS} assets: "
              f"{epoch_hours:.2f} GPU-hours", flush=True)
        del module, optimizer, inputs
        if device.type == "cuda":
            torch.cuda.empty_cache()
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"mode": "gpu", "smoke": args.smoke, "machine": machine, "torch": torch.__version__, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--cpu", action="store_true", help="tiny models, real training loop, samples/s")
    mode.add_argument("--gpu", action="store_true", help="full-size adapter step at ss and shape_1024")
    parser.add_argument("--smoke", action="store_true", help="GPU mode at tiny size (checks the script)")
    parser.add_argument("--device", default="cuda", help="GPU mode device")
    parser.add_argument("--batch", type=int, default=None, help="samples per step (CPU: 4, GPU: 8)")
    parser.add_argument("--steps", type=int, default=8, help="CPU mode: training steps per stage")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the measurement")
    parser.add_argument("--repeat", type=int, default=3, help="GPU mode: measured steps")
    parser.add_argument("--samples", type=int, default=8, help="CPU mode: synthetic dataset size")
    parser.add_argument("--threads", type=int, default=2, help="CPU mode: torch threads")
    parser.add_argument("--tiny-root", help="CPU mode: an existing tiny model folder (else written to a temp dir)")
    parser.add_argument("--shape-tokens", type=int, default=20_000, help="GPU mode: shape_1024 voxels per sample")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.batch = args.batch or (4 if args.cpu else 8)
    report = bench_cpu(args) if args.cpu else bench_gpu(args)
    report["torch"] = torch.__version__
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
