"""Editor transformer forwards per asset: the default hidden-state tap against a full run (not a test).

Runs the real diffusers Qwen-Image-Edit-Plus pipeline (tiny random weights, CPU) with the default editor schedule
(40 steps, true CFG 4.0) and the default tap (`tap.step_frac=0.25` -> step index 10), counting every transformer
call: tap with the free x0 preview, tap with no preview, and the full 40-step edit (what `preview=full` and the
multiview mode pay). The forward count does not depend on the model size, so the ratio holds for the real model.

Example:
    python scripts/bench_editor_tap.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from know3d_cli.config import EditorConfig, RuntimeConfig, TapConfig
from know3d_cli.editor import imagine_back, load_editor
from know3d_cli.runtime import resolve_runtime
from know3d_cli.tiny.editor import write_tiny_editor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=EditorConfig.steps)
    parser.add_argument("--step-frac", type=float, default=TapConfig.step_frac)
    parser.add_argument("--cfg", type=float, default=EditorConfig.true_cfg_scale)
    args = parser.parse_args()
    runtime = resolve_runtime(RuntimeConfig(device="cpu", dtype="float32"))
    cfg = EditorConfig(steps=args.steps, true_cfg_scale=args.cfg, resolution=64)
    tap = TapConfig(block=1, step_frac=args.step_frac)
    image = Image.new("RGB", (64, 64), (90, 120, 200))
    with tempfile.TemporaryDirectory() as tmp:
        pipe = load_editor(write_tiny_editor(Path(tmp) / "editor"), cfg, runtime)
        runs = {"tap, preview=x0": ("x0", False), "tap, preview=none": ("none", False), "full run": ("full", True)}
        counts = {}
        for name, (preview, full) in runs.items():
            start = time.perf_counter()
            result = imagine_back(pipe, image, "back view", cfg, tap, preview=preview,
                                  generator=torch.Generator().manual_seed(0), need_full_image=full)
            counts[name] = result.forwards
            print(f"{name:18s} {result.forwards:4d} transformer forwards (tap at step {result.step_index}/"
                  f"{args.steps}), {time.perf_counter() - start:.2f} s on tiny weights")
    full = counts["full run"]
    for name in ("tap, preview=x0", "tap, preview=none"):
        print(f"{name}: {full / counts[name]:.2f}x fewer forwards than the full run")


if __name__ == "__main__":
    main()
