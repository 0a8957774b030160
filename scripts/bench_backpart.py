"""The back-part benchmark (not a test): does back-side text, through H_DiT and the Know3D adapter, shape the back?

End to end on the CPU, at tiny width, with a fixed seed:

1. the procedural family (`know3d_cli/data/procedural.py`): base bodies x back parts, each part only on the back;
   one part per base is held out of training (`held_out_split`);
2. `know3d data build` of the training and the held-out assets (SS-only datasets: `data.latents=ss`, front view at
   azimuth 0, the CSV caption as back text, K prompt variants, the tiny random DINOv3 and editor);
3. `know3d train` from scratch: the SS VAE (`train.trainable=ss_vae`), the SS flow conditioned on the front view
   (`train.trainable=flow`, latents from the trained encoder: `train.ss_latents=encoder`), then the Know3D adapter on
   the editor's H_DiT with the flow frozen; each exported with `know3d train export`;
4. on the held-out base x part combinations, generation in `trellis`, `multiview` and `know3d` modes
   (`trellis2.pipeline_type=ss`, the app's `Know3dPipeline`), scored on the back half of the 64^3 occupancy against
   the ground truth: back-region IoU, and part-identification accuracy (the part of the same base whose ground truth
   matches the generated back best);
5. with `--editor-lora STEPS`, the paper's editor fine-tune: `know3d train editor-lora` on the training pairs, the
   text signal of H_DiT with and without it, both datasets' H_DiT tapped again with it (`data.retap`, at the tap
   `--lora-tap` sets), the adapter retrained on those, every mode generated with it, and the caption swap
   (`text_effect`: every held-out front generated once per caption; does the back follow the text?).

Writes `<work>/report.json` (`signal.json`, `flow-check.json` for those) and `<work>/backpart.png` (per held-out
asset: front render, ground truth from behind, each mode from behind); with `--editor-lora`,
`<work>/backpart-lora<STEPS>[-<tap>].png` (with and without the LoRA). Every stage resumes: a finished data build
or training run in `<work>` is kept, a longer `--flow-steps` continues the flow from its last checkpoint.
`--signal` instead measures how much of the tapped H_DiT is the back text; `--flow-check` how the trained SS flow
uses its image condition (`flow_check`).
`--ablation NAME=OVERRIDES` retrains only the adapter with extra `train.*` overrides and scores `know3d` again
(`trellis2.*` overrides change generation only, and score `trellis` too).

Examples:
    python scripts/bench_backpart.py --work /tmp/backpart --json backpart.json
    python scripts/bench_backpart.py --work /tmp/backpart --editor-lora 600
    python scripts/bench_backpart.py --work /tmp/backpart --signal
    python scripts/bench_backpart.py --work /tmp/backpart --flow-check     # after a run: the flow's use of the image
    python scripts/bench_backpart.py --work /tmp/backpart --ablation "pool2=train.adapter.pool=2"
    python scripts/bench_backpart.py --smoke --work /tmp/backpart-smoke     # 3 shapes, a few steps
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import platform
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
MODES = ("trellis", "multiview", "know3d")
BENCH_PARTS = ("handle", "pocket", "fin", "strap", "none")
SEED = 0
# settings the data build and generation share (generation must see the conditions training saw)
SHARED = ["preset=tiny", "editor.true_cfg_scale=1.0"]
DATA = ["data.latents=ss", "data.ovoxel.resolution=256", "data.views.azimuth_range=[0,0]",
        "data.views.elevation_range=[0,10]", "data.views.size=512", "data.dino_resolutions=[512]",
        "data.text.source=caption", "data.prompts.variants=2", "data.group_size=64", f"data.seed={SEED}"]
COMMON_TRAIN = ["train=ss", "train.tensorboard=false", "train.log_every=25", "train.validation.every=0",
                f"train.seed={SEED}", "train.lr_schedule.warmup_steps=20", "train.lr_schedule.decay=cosine",
                "train.lr_schedule.min_lr_ratio=0.1", "train.ema.rate=0.999", "train.keep_checkpoints=1"]
ADAPTER = ["train.adapter.proj_channels=64"]
# the editor LoRA of the LoRA route (`--editor-lora STEPS`)
LORA_TRAIN = ["train.editor_lora.rank=8", "train.editor_lora.alpha=8", "train.editor_lora.lr=5e-3",
              "train.editor_lora.target_modules=[to_q,to_k,to_v,to_out.0,add_q_proj,add_k_proj,add_v_proj,to_add_out]"]

logger = logging.getLogger("bench_backpart")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/know3d-backpart"), help="working folder (resumable)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vae-steps", type=int, default=150)
    parser.add_argument("--vae-batch", type=int, default=2)
    parser.add_argument("--flow-steps", type=int, default=400)
    parser.add_argument("--adapter-steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8, help="flow and adapter batch size")
    parser.add_argument("--smoke", action="store_true", help="3 shapes, a few steps: checks that every stage connects")
    parser.add_argument("--ablation", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="retrain the adapter with these space-separated overrides and score know3d")
    parser.add_argument("--signal", action="store_true",
                        help="only measure how much H_DiT depends on the back text, per tap block / step / tokens")
    parser.add_argument("--flow-check", nargs="?", const="", default=None, metavar="FLOW_STEM",
                        help="only measure how the trained SS flow (of --work, or this checkpoint without extension) "
                             "uses its image condition")
    parser.add_argument("--editor-lora", type=int, default=0, metavar="STEPS",
                        help="also the LoRA route: an editor LoRA trained STEPS steps on the training pairs, H_DiT "
                             "tapped again with it, the adapter retrained on those, every mode scored with it")
    parser.add_argument("--lora-tap", action="append", default=[], metavar="OVERRIDE",
                        help="tap.* override for the LoRA route's H_DiT (e.g. tap.tokens=all); names its folders")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.signal:
        report, name = signal(args.work), "signal.json"
    elif args.flow_check is not None:
        report, name = flow_check(args.work, Path(args.flow_check) if args.flow_check else None), "flow-check.json"
    else:
        report, name = run(args), "report.json"
    text = json.dumps(report, indent=2)
    (args.work / name).write_text(text)
    if args.json:
        args.json.write_text(text)
    logger.info("%s", json.dumps(report.get("table", report), indent=2))


def run(args) -> dict:
    from know3d_cli.data.procedural import family, held_out_split
    from know3d_cli.tiny import build_tiny_models

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    tiny = build_tiny_models(work / "tiny")
    if args.smoke:
        specs = family(bodies=("box",), proportions=("tall",), parts=("handle", "fin", "none"), seed=SEED)
        args.vae_steps = args.flow_steps = args.adapter_steps = 2
        args.vae_batch, args.batch = 2, 2
    else:
        specs = family(parts=BENCH_PARTS, seed=SEED)
    train_specs, test_specs = held_out_split(specs)

    t = time.perf_counter()
    train_data = build_dataset(work, "train", train_specs, tiny)
    test_data = build_dataset(work, "test", test_specs, tiny)
    timings["data_build_s"] = time.perf_counter() - t

    t = time.perf_counter()
    models = train_models(args, work, tiny, train_data)
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    truth = {**ground_truth(train_data, train_specs), **ground_truth(test_data, test_specs)}
    scores = evaluate(work, tiny, models, test_specs, test_data, truth, MODES)
    timings["generate_and_score_s"] = time.perf_counter() - t
    figure(work, test_specs, test_data, truth, [(f"{mode} (back)", "", mode) for mode in MODES])

    ablations = {}
    for spec in args.ablation:
        name, _, overrides = spec.partition("=")
        sampler = [o for o in overrides.split() if o.startswith("trellis2.")]  # generation only: no retraining
        training = [o for o in overrides.split() if o not in sampler]
        adapter = train_adapter(args, work, tiny, train_data, models, name, training) if training else models["adapter"]
        result = evaluate(work, tiny, {**models, "adapter": adapter}, test_specs, test_data, truth,
                          ("trellis", "know3d") if sampler else ("know3d",), tag=name, extra=tuple(sampler))
        ablations[name] = {"overrides": overrides.split(), "table": table(result)}
    lora = None
    if args.editor_lora:
        t = time.perf_counter()
        lora = lora_route(args, work, tiny, (train_data, test_data), models, test_specs, truth)
        timings["lora_route_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start
    return {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "torch": torch.__version__},
        "assets": {"train": [s.id for s in train_specs], "held_out": [s.id for s in test_specs]},
        "steps": {"vae": args.vae_steps, "flow": args.flow_steps, "adapter": args.adapter_steps,
                  "batch": args.batch, "vae_batch": args.vae_batch},
        "table": table(scores),
        "per_asset": scores,
        "ablations": ablations,
        "editor_lora": lora,
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "figure": str(work / "backpart.png"),
    }


# ------------------------------------------------------------------------------------------------ data
def build_dataset(work: Path, name: str, specs, tiny: Path) -> Path:
    from know3d_cli.config import load_config
    from know3d_cli.data.build import run_build
    from know3d_cli.data.procedural import write_family
    from know3d_cli.shard import Shard

    manifest = write_family(specs, work / "assets" / name)
    out = work / f"data-{name}"
    cfg = load_config([*SHARED, f"models.tiny_root={tiny}", *DATA])
    summary = run_build(str(manifest), out, cfg, Shard(0, 1), emit=lambda event: None)
    if summary.failed:
        raise SystemExit(f"data build of {name} failed for {summary.failed} assets (see {out}/failures)")
    return out


def ground_truth(dataset: Path, specs) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file

    return {s.id: load_file(str(dataset / "samples" / s.id / "latents.safetensors"))["occupancy"].numpy()
            for s in specs}


# ------------------------------------------------------------------------------------------------ training
def model_overrides(tiny: Path, folders: Path) -> list[str]:
    return [*SHARED, f"models.tiny_root={tiny}", f"models.trellis2.path={folders / 'trellis2'}",
            f"models.ss_decoder.path={folders / 'trellis_image_large'}",
            f"models.ss_encoder.path={folders / 'trellis_image_large'}"]


def train(name: str, overrides: list[str]) -> list[dict]:
    from know3d_cli.config import load_config
    from know3d_cli.train import run_training

    records: list[dict] = []
    cfg = load_config(overrides)
    resume = "latest" if (Path(cfg.train.output_dir) / "checkpoints" / "latest").is_file() else None
    logger.info("training %s%s", name, " (resuming)" if resume else "")
    run_training(cfg, resume=resume, emit=records.append)
    metrics = Path(cfg.train.output_dir) / "metrics.jsonl"
    losses = [r["loss"] for r in map(json.loads, metrics.read_text().splitlines()) if r.get("event") == "train"]
    logger.info("%s: loss %.4f -> %.4f", name, losses[0], losses[-1])
    return records


def train_models(args, work: Path, tiny: Path, dataset: Path) -> dict:
    from know3d_cli.tiny.backpart import write_model_folders
    from know3d_cli.train import export_checkpoint

    untrained = write_model_folders(work / "untrained", tiny, seed=SEED)
    weights = work / "weights"
    vae_run, flow_run = work / "run-vae", work / "run-flow"
    train("ss_vae", [*model_overrides(tiny, untrained), *COMMON_TRAIN, f"train.dataset={dataset}",
                     f"train.output_dir={vae_run}", "train.trainable=ss_vae", "train.from_scratch=true",
                     "train.ss_vae.loss=dice", f"train.steps={args.vae_steps}", f"train.batch_size={args.vae_batch}",
                     "train.optimizer.lr=3e-3", f"train.checkpoint_every={args.vae_steps}"])
    export_checkpoint(vae_run, weights)
    shutil.copytree(untrained / "trellis2" / "ckpts", weights / "ckpts", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*shape*", "*tex*", "slat*"))
    with_vae = write_model_folders(work / "with-vae", tiny, weights=weights)
    train("ss_flow", [*model_overrides(tiny, with_vae), *COMMON_TRAIN, f"train.dataset={dataset}",
                      f"train.output_dir={flow_run}", "train.trainable=flow", "train.from_scratch=true",
                      "train.ss_latents=encoder", f"train.steps={args.flow_steps}", f"train.batch_size={args.batch}",
                      "train.optimizer.lr=1e-3", f"train.checkpoint_every={args.flow_steps}"])
    export_checkpoint(flow_run, weights)
    folders = write_model_folders(work / "trained", tiny, weights=weights)
    models = {"folders": folders, "weights": weights}
    models["adapter"] = train_adapter(args, work, tiny, dataset, models, "adapter", [])
    return models


def train_adapter(args, work: Path, tiny: Path, dataset: Path, models: dict, name: str, extra: list[str]) -> Path:
    from know3d_cli.train import export_checkpoint

    run_dir, out = work / f"run-{name}", work / f"{name}-weights"
    train(name, [*model_overrides(tiny, models["folders"]), *COMMON_TRAIN, *ADAPTER, f"train.dataset={dataset}",
                 f"train.output_dir={run_dir}", "train.ss_latents=encoder", f"train.steps={args.adapter_steps}",
                 f"train.batch_size={args.batch}", "train.optimizer.lr=1e-3",
                 f"train.checkpoint_every={args.adapter_steps}", *extra])
    export_checkpoint(run_dir, out)
    return out


# ------------------------------------------------------------------------------------------------ editor LoRA route
def lora_route(args, work: Path, tiny: Path, datasets: tuple[Path, Path], models: dict, test_specs, truth) -> dict:
    """The paper's editor fine-tune: a LoRA on the training pairs, the text signal in H_DiT with and without it,
    both datasets' H_DiT tapped again with it, the adapter retrained on them, every mode generated with it."""
    from know3d_cli.config import load_config
    from know3d_cli.data.retap import retap_dataset

    steps = args.editor_lora
    lora = train_editor_lora(work, tiny, datasets[0], steps)
    editor = [f"editor.lora={lora}", *args.lora_tap]
    tag = f"lora{steps}" + "".join("-" + o.removeprefix("tap.").replace("=", "-") for o in args.lora_tap)
    signal = {"random": hdit_signal(tiny, work, []), "lora": hdit_signal(tiny, work, [f"editor.lora={lora}"])}
    cfg = load_config([*SHARED, f"models.tiny_root={tiny}", *DATA, *editor])
    retapped = [work / f"data-{name}-{tag}" for name in ("train", "test")]
    for dataset, out in zip(datasets, retapped):
        retap_dataset(dataset, out, cfg)
    adapter = train_adapter(args, work, tiny, retapped[0], models, f"{tag}-adapter", [])
    scores = evaluate(work, tiny, {**models, "adapter": adapter}, test_specs, retapped[1], truth, MODES,
                      tag=tag, extra=tuple(editor))  # trellis does not use the editor: the control
    figure(work, test_specs, retapped[1], truth,
           [("trellis", "", "trellis"), ("multiview+LoRA", tag, "multiview"), ("know3d", "", "know3d"),
            ("know3d+LoRA", tag, "know3d")], name=f"backpart-{tag}.png")
    effect = {"random": text_effect(work, tiny, models, test_specs, datasets[1], truth),
              "lora": text_effect(work, tiny, {**models, "adapter": adapter}, test_specs, retapped[1], truth,
                                  tuple(editor))}
    return {"steps": steps, "file": str(lora), "training": LORA_TRAIN, "tap": args.lora_tap, "signal": signal,
            "table": table(scores), "per_asset": scores, "text_effect": effect}


def train_editor_lora(work: Path, tiny: Path, dataset: Path, steps: int) -> Path:
    """`know3d train editor-lora` on the training pairs (kept when a run of `steps` steps finished in `work`)."""
    from know3d_cli.config import load_config
    from know3d_cli.io import atomic_write
    from know3d_cli.train.editor_lora import train_editor_lora as run_lora

    out = work / f"editor-lora{steps}"
    done = out / "done.json"
    if done.is_file():
        return Path(json.loads(done.read_text())["file"])
    cfg = load_config([*SHARED, f"models.tiny_root={tiny}", "runtime.device=cpu", f"train.dataset={dataset}",
                       f"train.seed={SEED}", "train.log_every=25", f"train.editor_lora.output={out}",
                       f"train.editor_lora.steps={steps}", f"train.editor_lora.save_every={steps}", *LORA_TRAIN])
    logger.info("training the editor LoRA (%d steps)", steps)
    start = time.perf_counter()
    result = run_lora(cfg, emit=lambda record: logger.info("%s", json.dumps(record)))
    first, last = float(np.mean(result.losses[:25])), float(np.mean(result.losses[-25:]))
    logger.info("editor LoRA: loss %.4f -> %.4f (means of the first and last 25 steps)", first, last)
    atomic_write(done, json.dumps({"file": str(result.path), "steps": steps, "loss_first": first, "loss_last": last,
                                   "seconds": round(time.perf_counter() - start, 1)}).encode())
    return result.path


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate(work: Path, tiny: Path, models: dict, specs, dataset: Path, truth: dict, modes, tag: str = "",
             extra: tuple[str, ...] = ()) -> list:
    from know3d_cli.config import load_config
    from know3d_cli.data.back_region import back_iou, identify_part
    from know3d_cli.pipeline import AssetJob, Know3dPipeline

    scores = []
    for mode in modes:
        cfg = load_config([*model_overrides(tiny, models["folders"]), f"mode={mode}", "trellis2.pipeline_type=ss",
                           f"adapter.weights={models['adapter']}", "adapter.stages=[ss]", "preview=none",
                           "export.preview=false", *extra])
        pipeline = Know3dPipeline(cfg, keep_models=True)
        out, occupancy = work / f"generated{('-' + tag) if tag else ''}" / mode, occupancy_dir(work, tag, mode)
        for folder in (out, occupancy):
            if folder.exists():
                shutil.rmtree(folder)
        occupancy.mkdir(parents=True)
        for index, spec in enumerate(specs):
            job = AssetJob(dataset / "samples" / spec.id / "front.png", spec.id, spec.caption, SEED + index)
            coords = structure(pipeline, job, out)
            np.save(occupancy / f"{spec.id}.npy", coords)
            references = {part: occ for part, occ in _same_base(spec, truth).items()}
            scores.append({"id": spec.id, "mode": mode, "part": spec.part,
                           "back_iou": back_iou(coords, truth[spec.id]),
                           "identified": identify_part(coords, references)})
    return scores


def structure(pipeline, job, out: Path) -> np.ndarray:
    """The (M, 3) occupied voxels `pipeline` generates for `job`; an empty structure scores as empty."""
    from know3d_cli.errors import GenerationError

    try:
        return pipeline.run(job, out).asset.voxel_coords.numpy()
    except GenerationError as exc:
        logger.warning("%s: %s", job.id, exc)
        return np.zeros((0, 3), np.int64)


def text_effect(work: Path, tiny: Path, models: dict, specs, dataset: Path, truth: dict,
                editor: tuple[str, ...] = ()) -> dict:
    """Does the back text steer the back? Every held-out front generated in `know3d` mode once per part's caption
    (the asset's seed each time): how often the identified part is the captioned one (chance: 1 in 5), and how alike
    one front's structures under different captions are (mean back-region IoU over caption pairs; 1 = the text
    changes nothing). `editor`: editor overrides (`editor.lora=FILE`)."""
    from itertools import combinations

    from know3d_cli.config import load_config
    from know3d_cli.data.back_region import back_iou, identify_part
    from know3d_cli.data.procedural import CAPTIONS
    from know3d_cli.pipeline import AssetJob, Know3dPipeline

    cfg = load_config([*model_overrides(tiny, models["folders"]), "mode=know3d", "trellis2.pipeline_type=ss",
                       f"adapter.weights={models['adapter']}", "adapter.stages=[ss]", "preview=none",
                       "export.preview=false", *editor])
    pipeline = Know3dPipeline(cfg, keep_models=True)
    out = work / "generated-text-effect"
    followed, alike = [], []
    for index, spec in enumerate(specs):
        structures = {}
        for part in BENCH_PARTS:
            if out.exists():
                shutil.rmtree(out)
            job = AssetJob(dataset / "samples" / spec.id / "front.png", spec.id, CAPTIONS[part], SEED + index)
            structures[part] = structure(pipeline, job, out)
            followed.append(identify_part(structures[part], _same_base(spec, truth)) == part)
        alike.extend(back_iou(structures[a], structures[b]) for a, b in combinations(BENCH_PARTS, 2))
    shutil.rmtree(out, ignore_errors=True)
    return {"caption_followed": round(float(np.mean(followed)), 4),
            "between_captions_back_iou": round(float(np.mean(alike)), 4), "generations": len(followed)}


def occupancy_dir(work: Path, tag: str, mode: str) -> Path:
    """Where the generated occupancies of a mode go, one `<id>.npy` (M, 3) each."""
    return work / f"occupancy{('-' + tag) if tag else ''}" / mode


def _same_base(spec, truth: dict) -> dict[str, np.ndarray]:
    """Ground truth of every part on the asset's base, by part name."""
    prefix = f"{spec.base}-"
    return {name[len(prefix):].rsplit("-c", 1)[0]: occ for name, occ in truth.items() if name.startswith(prefix)}


def table(scores: list) -> dict:
    rows = {}
    for mode in dict.fromkeys(s["mode"] for s in scores):
        mine = [s for s in scores if s["mode"] == mode]
        rows[mode] = {"back_iou": round(float(np.mean([s["back_iou"] for s in mine])), 4),
                      "part_accuracy": round(float(np.mean([s["identified"] == s["part"] for s in mine])), 4),
                      "assets": len(mine)}
    return rows


def figure(work: Path, specs, dataset: Path, truth: dict, columns: list[tuple[str, str, str]],
           name: str = "backpart.png") -> Path:
    """`work/name`: per held-out asset, the front render, the ground truth from behind, then one column per
    (title, run tag, mode) of generated structures from behind."""
    from PIL import Image

    from know3d_cli.render import contact_sheet, depth_image

    side = 112
    rows = []
    for spec in specs:
        front = Image.open(dataset / "samples" / spec.id / "front.png").convert("RGBA")
        plain = Image.new("RGB", front.size, (255, 255, 255))
        plain.paste(front, mask=front.split()[3])
        row = [plain.resize((side, side)), depth_image(truth[spec.id], 64, 0.0, size=side)]
        for _, tag, mode in columns:
            coords = np.load(occupancy_dir(work, tag, mode) / f"{spec.id}.npy")
            row.append(depth_image(coords, 64, 0.0, size=side))
        rows.append(row)
    sheet = contact_sheet(rows, titles=["front", "truth (back)", *[title for title, _, _ in columns]])
    path = work / name
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    path.write_bytes(buf.getvalue())
    return path


def hdit_signal(tiny: Path, work: Path, editor: list[str], seeds: int = 3) -> dict:
    """How much of H_DiT is the back text: for one front view of the family, the tapped states of every caption
    under `seeds` editor noises (the same noises for every caption); per tap setting, the variance across captions
    (of the per-caption means) against the variance across noises, their ratio, and bf16's rounding step at the
    states' scale (the dataset stores H_DiT in bf16). `editor`: overrides of the editor (`editor.lora=FILE`)."""
    from know3d_cli.config import load_config
    from know3d_cli.data import load_asset, render_view_pair
    from know3d_cli.data.procedural import CAPTIONS, AssetSpec, write_family
    from know3d_cli.editor import imagine_back, load_editor
    from know3d_cli.mllm import build_back_prompt
    from know3d_cli.runtime import resolve_runtime

    manifest = write_family([AssetSpec("cylinder", "tall", "none", 0)], work / "assets" / "signal")
    cfg = load_config([*SHARED, f"models.tiny_root={tiny}", *DATA])
    asset = load_asset(manifest.parent / "cylinder-tall-none-c0.glb", cfg.data.asset)
    front = render_view_pair(asset, 0.0, 5.0, cfg.data.views, cfg.preprocess).front_image
    captions = [CAPTIONS[p] for p in BENCH_PARTS]
    settings = {"block1_step0.25_target": [], "block0_step0.25_target": ["tap.block=0"],
                "block1_step0.0_target": ["tap.step_frac=0.0"], "block1_step0.5_target": ["tap.step_frac=0.5"],
                "block1_step0.75_target": ["tap.step_frac=0.75"], "block1_step0.25_all": ["tap.tokens=all"]}
    report = {}
    for name, extra in settings.items():
        run_cfg = load_config([*SHARED, f"models.tiny_root={tiny}", *editor, *extra])
        pipe = load_editor(tiny / "editor", run_cfg.editor, resolve_runtime(run_cfg.runtime))
        states = torch.stack([torch.stack([
            imagine_back(pipe, front, build_back_prompt(c).instruction, run_cfg.editor, run_cfg.tap,
                         preview="none", generator=torch.Generator().manual_seed(seed)).hidden[0].float()
            for seed in range(seeds)]) for c in captions])  # (captions, seeds, h, w, C)
        scale = states.abs().mean().item()
        between_captions, between_noises = states.mean(dim=1).var(dim=0).mean().item(), states.var(dim=1).mean().item()
        report[name] = {"between_captions_var": between_captions, "between_noises_var": between_noises,
                        "ratio": between_captions / between_noises, "mean_abs": scale,
                        "bf16_step_at_mean_abs": scale * 2.0**-8}
        logger.info("%s: %s", name, report[name])
    return report


def signal(work: Path) -> dict:
    """`--signal`: `hdit_signal` of the random tiny editor."""
    from know3d_cli.tiny import build_tiny_models

    return hdit_signal(build_tiny_models(work / "tiny"), work, [])


def flow_check(work: Path, flow_stem: Path | None = None, times=(0.2, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0),
               euler_steps: int = 25) -> dict:
    """`--flow-check`: does the trained SS flow use its image? On every 4th training sample and every held-out one,
    with the run's SS VAE (latent x0 = the encoder's posterior mean, as in training; errors relative to the latents'
    variance):

    - `x0_error[t]`: the flow's one-step estimate `x0 = x_t - t v` from a true `x_t = (1 - t) x0 + t eps`, and the
      occupancy IoU of its decoding (`x0_iou[t]`); `vae_iou`: of x0 itself;
    - `condition_effect`: at t = 1 (pure noise, where only the image tells the samples apart), the error with the
      sample's own DINOv3 tokens, with another sample's, with zeros, and of the mean latent (what a flow that
      ignores the image should output there);
    - `sample_iou`: `euler_steps` uniform Euler steps from noise without CFG, decoded.
    """
    from safetensors.torch import load_file

    from know3d_cli.data.latents import dense_occupancy
    from know3d_cli.tiny.backpart import SS_FLOW_NAME
    from know3d_cli.tiny.trellis2 import SS_DECODER_DIR, SS_DECODER_NAME, SS_ENCODER_NAME, TRELLIS2_DIR
    from know3d_cli.trellis2.checkpoint import Precision, load_model

    folders = work / "trained"
    encoder, decoder = (load_model(folders / SS_DECODER_DIR / "ckpts" / name, precision=Precision.fp32)
                        for name in (SS_ENCODER_NAME, SS_DECODER_NAME))
    flow = load_model(flow_stem or folders / TRELLIS2_DIR / "ckpts" / SS_FLOW_NAME, precision=Precision.fp32)

    def samples(split: str, every: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(x0, 64^3 occupancy, DINOv3 tokens) of every `every`-th sample of a dataset."""
        root = work / f"data-{split}" / "samples"
        out = []
        for folder in sorted(root.iterdir())[::every]:
            grid = dense_occupancy(load_file(str(folder / "latents.safetensors"))["occupancy"])
            dino = load_file(str(folder / "conditions.safetensors"))["dino_512"].float()[None]
            out.append((encoder(grid).mean, grid[0, 0] > 0.5, dino))
        return out

    def iou(latent: torch.Tensor, truth: torch.Tensor) -> float:
        occupied = decoder(latent)[0, 0] > 0
        return float((occupied & truth).sum() / max(1, int((occupied | truth).sum())))

    def x0_estimate(x: torch.Tensor, t: float, context) -> torch.Tensor:
        return x - t * flow(x, torch.tensor([1000.0 * t]), context)

    report: dict = {"flow": str(flow_stem or SS_FLOW_NAME)}
    with torch.no_grad():
        groups = {"train": samples("train", 4), "held_out": samples("test", 1)}
        latents = torch.cat([x0 for x0, _, _ in groups["train"]])
        variance, mean = latents.var().item(), latents.mean(dim=0, keepdim=True)
        for split, items in groups.items():
            rows = {"x0_error": {}, "x0_iou": {}}
            for t in times:
                errors, ious = [], []
                for k, (x0, truth, dino) in enumerate(items):
                    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(k))
                    estimate = x0_estimate((1 - t) * x0 + t * noise, t, flow.prepare_context(dino))
                    errors.append(((estimate - x0) ** 2).mean().item() / variance)
                    ious.append(iou(estimate, truth))
                rows["x0_error"][str(t)], rows["x0_iou"][str(t)] = float(np.mean(errors)), float(np.mean(ious))
            effect = {"own": [], "other": [], "zeros": [], "mean_latent": []}
            sampled, vae = [], []
            for k, (x0, truth, dino) in enumerate(items):
                noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(k))
                other = items[(k + len(items) // 2) % len(items)][2]
                for name, tokens in (("own", dino), ("other", other), ("zeros", torch.zeros_like(dino))):
                    estimate = x0_estimate(noise, 1.0, flow.prepare_context(tokens))
                    effect[name].append(((estimate - x0) ** 2).mean().item() / variance)
                effect["mean_latent"].append(((mean - x0) ** 2).mean().item() / variance)
                x, context = noise.clone(), flow.prepare_context(dino)
                ts = torch.linspace(1.0, 0.0, euler_steps + 1).tolist()
                for a, b in zip(ts[:-1], ts[1:]):
                    x = x - (a - b) * flow(x, torch.tensor([1000.0 * a]), context)
                sampled.append(iou(x, truth))
                vae.append(iou(x0, truth))
            rows["condition_effect"] = {name: float(np.mean(v)) for name, v in effect.items()}
            rows["sample_iou"], rows["vae_iou"] = float(np.mean(sampled)), float(np.mean(vae))
            rows["samples"] = len(items)
            report[split] = rows
            logger.info("%s: %s", split, json.dumps(rows))
    return report


if __name__ == "__main__":
    main()
