"""Batch throughput of the local engine and of engine=ray with 1..N actors (a benchmark, not a test).

Every configuration runs the same manifest (N copies of one photo, ids `item-000`, ..., seeds 0..N-1) into a fresh
output folder through `batch.run_batch`, the code `know3d batch` runs, and records when each item's line arrives.
Reported per configuration:

- `wall_s`: the whole batch, model loading and actor start included (the Ray cluster is started once, before);
- `first_item_s`: until the first item is finished (start-up: actor processes, imports, model loading);
- `items_per_s`: steady throughput, (N - k) / (time of the last item - time of the k-th), k = the number of actors;
- `chain_s`: the median time an item spends in the chain's stages (the sum of `timings_s` in its metadata.json;
  the first item of each pipeline also loads its models there);
- `overhead_per_item_s`: steady seconds per item per actor (k / items_per_s) minus `chain_s`: what surrounds the
  stages -- writing the asset folder, lock, resume check, results.jsonl, and for Ray the scheduling, pickling and
  the round trip to the driver. Taking `chain_s` from the same run keeps a loaded machine's noise out of it.

CPU (default): tiny random models, one torch thread per actor and for the local engine, smallest chain unless
`--chain` says otherwise. GPU (`--gpu`): one actor per GPU (`engine.ray.gpus_per_actor=1`), the local engine on one
GPU; the tiny set measures the engine, `--real-models` the configured full-size models (`know3d models pull` first).

Examples:
    python scripts/bench_ray.py --items 12 --actors 1 2                       # this 2-core box
    python scripts/bench_ray.py --gpu --real-models --chain full --items 64 --actors 1 8   # a node with 8 GPUs
    python scripts/bench_ray.py --smoke --engines local                       # seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from know3d_cli.batch import run_batch  # noqa: E402
from know3d_cli.metadata import METADATA_FILE  # noqa: E402

CHAINS = {
    "smallest": ["mode=trellis", "trellis2.pipeline_type=ss", "trellis2.ss.steps=1", "export.faces=2000",
                 "preprocess.max_side=64"],
    "trellis512": ["mode=trellis", "trellis2.pipeline_type=512", "export.faces=5000", "export.texture_size=64",
                   "preprocess.max_side=64"],
    "full": [],  # the default chain (editor, 1024_cascade, textured GLB): the demo's chain on the tiny set
}


def write_manifest(folder: Path, items: int) -> Path:
    arr = np.full((64, 64, 3), 255, np.uint8)
    arr[12:52, 16:48] = (40, 80, 200)
    Image.fromarray(arr).save(folder / "photo.png")
    path = folder / "assets.csv"
    path.write_text("image,id,seed,back\n" + "".join(f"photo.png,item-{i:03d},{i},a zipper pocket\n"
                                                     for i in range(items)), encoding="utf-8")
    return path


def run(manifest: Path, out: Path, overrides: list[str], actors: int) -> dict:
    arrivals: list[float] = []
    start = time.perf_counter()

    def emit(event: dict) -> None:
        if event.get("event") == "asset":
            arrivals.append(time.perf_counter() - start)
            if event["status"] != "ok":
                raise RuntimeError(f"item failed: {event}")

    summary = run_batch(manifest, out, overrides, emit=emit)
    wall = time.perf_counter() - start
    k = max(1, actors)
    steady = (len(arrivals) - k) / (arrivals[-1] - arrivals[k - 1]) if len(arrivals) > k else None
    chain = float(np.median([sum(json.loads(meta.read_text())["timings_s"].values())
                             for meta in out.glob(f"*/{METADATA_FILE}")]))  # the median leaves out model loading
    return {"items": len(arrivals), "ok": summary.ok, "wall_s": round(wall, 2), "first_item_s": round(arrivals[0], 2),
            "items_per_s": round(steady, 3) if steady else None, "chain_s": round(chain, 3),
            "overhead_per_item_s": round(k / steady - chain, 3) if steady else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="Ray actor counts to measure")
    parser.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--chain", default="smallest", choices=sorted(CHAINS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the local engine and of each actor")
    parser.add_argument("--gpu", action="store_true", help="one actor per GPU; the local engine on one GPU")
    parser.add_argument("--real-models", action="store_true", help="the configured models instead of the tiny set")
    parser.add_argument("--smoke", action="store_true", help="3 items, smallest chain (checks the script runs)")
    parser.add_argument("--tiny-root", type=Path, default=None, help="tiny model set (default: built in a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("overrides", nargs="*", help="config overrides after --")
    args = parser.parse_args()
    if args.smoke:
        args.items, args.chain = 3, "smallest"

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="know3d-bench-ray-") as tmp:
        tmp = Path(tmp)
        base = [*CHAINS[args.chain], *args.overrides]
        if not args.real_models:
            root = args.tiny_root
            if root is None:
                from know3d_cli.tiny import build_tiny_models

                root = build_tiny_models(tmp / "tiny")
            base = ["preset=tiny", f"models.tiny_root={root}", *base]
        manifest = write_manifest(tmp, args.items)
        results = []
        if "local" in args.engines:
            device = "runtime.device=cuda" if args.gpu else "runtime.device=cpu"
            results.append({"engine": "local", "actors": 0, **run(manifest, tmp / "local", [*base, device], 1)})
            print(json.dumps(results[-1]), flush=True)
        if "ray" in args.engines:
            import ray

            start = time.perf_counter()
            ray.init(num_cpus=None if args.gpu else max(args.actors) * args.threads, include_dashboard=False,
                     log_to_driver=False)
            ray_start = round(time.perf_counter() - start, 2)
            gpus = ["engine.ray.gpus_per_actor=1"] if args.gpu else ["engine.ray.gpus_per_actor=0"]
            for count in args.actors:
                overrides = [*base, "engine=ray", f"engine.ray.actors={count}", *gpus,
                             f"engine.ray.cpus_per_actor={args.threads}"]
                row = run(manifest, tmp / f"ray-{count}", overrides, count)
                results.append({"engine": "ray", "actors": count, "ray_init_s": ray_start, **row})
                print(json.dumps(results[-1]), flush=True)
            ray.shutdown()
    report = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "items": args.items,
              "chain": args.chain, "threads": args.threads, "gpu": args.gpu,
              "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "results": results}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
