"""The `know3d` command line: parses, validates paths, turns flags into config overrides, calls the library.

stdout carries data only (one JSON object per asset, a summary for batch, JSON for the info commands);
logs, warnings and progress go to stderr. Errors are one line on stderr with a documented exit code
(see `errors.py`); `--debug` shows the traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from enum import Enum
from functools import partial, wraps
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TextIO

import typer

from . import __version__
from .config import MAX_SEED, EngineName, Know3dConfig, Mode, Preview
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, Interrupted, Know3dError, UsageError
from .inputs import IdTemplate, expand_inputs, split_arguments
from .manifest import RowDefaults, rows_from_images
from .outputs import ExistingAsset
from .progress import Progress

logger = logging.getLogger("know3d_cli")

app = typer.Typer(
    name="know3d",
    help="One photo plus a sentence about its hidden back side -> a textured 3D asset (Know3D on TRELLIS.2).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(help="Download, list and check the models.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the composed configuration.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")

_DEBUG = {"on": False}


# Shared options, declared once.
OverridesArg = Annotated[
    Optional[list[str]],
    typer.Argument(help="Config overrides as key=value (e.g. tap.block=20 editor=qwen_image_edit_2509).",
                   show_default=False),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output directory (one folder per asset).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display or info logs on stderr.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]
BackOpt = Annotated[Optional[str], typer.Option("--back", "-b", show_default=False,
                                                help="What the hidden back side looks like (default: config `back`, "
                                                     "empty).")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", min=0, max=MAX_SEED,
                                                help="Random seed (default: drawn, recorded in metadata.json).",
                                                show_default=False)]
ModeOpt = Annotated[Optional[Mode], typer.Option(
    "--mode", show_default=False, help="How the back view reaches TRELLIS.2 (auto = know3d with adapter weights, else "
                                       f"multiview) (default: {Know3dConfig.mode.value}).")]
PreviewOpt = Annotated[Optional[Preview], typer.Option(
    "--preview", show_default=False, help="What back.png shows: the editor's estimate at the tap step (x0, free), the "
                                          "finished edit (full) or nothing (none) "
                                          f"(default: {Know3dConfig.preview.value}).")]
IdTemplateOpt = Annotated[Optional[str], typer.Option(
    "--id-template", show_default=False, help="Asset folder name made from {stem} {name} {parent} {index} {seed} "
                                              "{mode}, e.g. \"{parent}_{stem}_s{seed}\" (default: {stem}).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Regenerate and replace finished assets.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Check inputs, config, models and outputs, run only the "
                                                           "preprocessing and write each asset's input.png.")]

GENERATE_EXAMPLES = """
Examples:

  know3d generate mug.png --back "a zipper pocket"

  know3d generate photos/*.png --back "a zipper pocket" --id-template "{parent}_{stem}_s{seed}" --seed 7

  know3d generate bag.jpg --back "two padded straps" --seed 7 --out assets/ tap.block=20

  know3d generate toy.png --mode trellis precision=fp32 runtime.device=cpu --overwrite
"""

BATCH_EXAMPLES = """
Examples:

  know3d batch assets.csv --out assets/

  find photos -name '*.png' | sed '1i image' | know3d batch - --back "a zipper pocket" --dry-run
"""


def _setup(quiet: bool, debug: bool) -> None:
    _DEBUG["on"] = debug
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s" if debug else "%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("know3d_cli").setLevel(level)
    for noisy in ("httpx", "huggingface_hub", "diffusers", "transformers", "hydra"):
        logging.getLogger(noisy).setLevel(logging.ERROR if not debug else logging.INFO)
    _quiet_hf_libraries(debug)


def _quiet_hf_libraries(debug: bool) -> None:
    """Keep the HF libraries' advice and progress bars off stderr without importing them (seconds of start-up):
    their environment variables are read when they are first imported; one already imported is set directly."""
    level = "info" if debug else "error"
    for package, variable in (("diffusers", "DIFFUSERS_VERBOSITY"), ("transformers", "TRANSFORMERS_VERBOSITY")):
        os.environ[variable] = level
        if package in sys.modules:
            module = importlib.import_module(f"{package}.utils.logging")
            module.set_verbosity(logging.INFO if debug else logging.ERROR)
            module.disable_progress_bar()
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


class _StderrHandler(logging.StreamHandler):
    """Logs to whatever `sys.stderr` is at the time, so that the progress display can print them above its bars."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def emit(obj: dict[str, Any], progress: Progress | None = None, stream: TextIO | None = None) -> None:
    """Write one JSON object as one line on stdout (the only thing that ever goes there); `stream` is stdout as it
    was when the command started (engine=ray sends what Ray prints on `sys.stdout` to stderr meanwhile)."""
    from .metadata import dumps

    out = stream or sys.stdout
    line = dumps(obj) + "\n"
    if progress is None:
        out.write(line)
        out.flush()
        return
    with progress.paused():
        out.write(line)
        out.flush()


def _load(overrides: list[str]):
    from .config import load_config

    return load_config(overrides)


def _interruptible(command: Callable[..., None]) -> Callable[..., None]:
    """Ctrl-C becomes `Interrupted` (one stderr line, exit 130); Typer would turn it into a silent exit 130."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted("interrupted (Ctrl-C); nothing half-written was kept") from None

    return run


# ------------------------------------------------------------------------------------ generate
@app.command(epilog=GENERATE_EXAMPLES)
@_interruptible
def generate(
    arguments: Annotated[list[str], typer.Argument(
        metavar="IMAGE... [KEY=VALUE...]",
        help="Photos of the object (files, folders or globs; alpha is used as the mask), then config overrides "
             "as key=value (e.g. tap.block=20).", show_default=False)],
    back: BackOpt = None,
    out: OutOpt = Path("outputs"),
    id: Annotated[Optional[str], typer.Option("--id", help="Asset id / folder name of a single image "
                                                          "(default: from --id-template).", show_default=False)] = None,
    id_template: IdTemplateOpt = None,
    seed: SeedOpt = None,
    mode: ModeOpt = None,
    preview: PreviewOpt = None,
    overwrite: OverwriteOpt = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Keep finished assets and report them "
                                                "as skipped (default: refuse to replace them).")] = False,
    dry_run: DryRunOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Generate a 3D asset from each IMAGE (and the --back text); stops at the first failure."""
    _setup(quiet, debug)
    inputs, overrides = split_arguments(arguments)
    overrides += _flag_overrides(seed=seed, mode=mode, preview=preview)
    existing = _existing_policy(overwrite, skip_existing, default=ExistingAsset.refuse)
    template = _id_template(id_template, id)
    cfg = _load(overrides)
    if cfg.engine.name is not EngineName.local:
        raise UsageError(f"engine={cfg.engine.name} schedules `know3d batch` items; generate runs in this process "
                         "(pipe the images into `know3d batch -` to use it)")
    images = expand_inputs(inputs)
    if id is not None and len(images) > 1:
        raise UsageError(f"--id names one asset but {len(images)} images were given; use --id-template")
    defaults = RowDefaults(back=back, seed=cfg.seed, mode=str(cfg.mode), id_template=template)
    rows = rows_from_images(images, defaults, explicit_id=None if id is None else _asset_id(id))
    for row in rows:
        if row.error is not None:  # two inputs, one id (or an unsafe one): nothing runs
            raise UsageError(row.error)
    from .batch import RunOptions, run_rows

    options = RunOptions(existing=existing, fail_fast=True, dry_run=dry_run, journal=False, log_failures=False,
                         debug=debug)
    with Progress(enabled=not quiet) as progress:
        summary = run_rows(rows, out, overrides, base=cfg, options=options, emit=partial(emit, progress=progress),
                           progress=progress)
    if summary.interrupted:
        raise Interrupted("interrupted (Ctrl-C); nothing half-written was kept")
    if summary.error is not None:
        raise summary.error


def _flag_overrides(**flags: Any) -> list[str]:
    """Hydra overrides for flags whose values are plain numbers or choice names (never free text)."""
    ov = []
    for key, value in flags.items():
        if value is None:
            continue
        if isinstance(value, Enum):
            value = value.value
        ov.append(f"{key}={value}")
    return ov


def _existing_policy(overwrite: bool, skip_existing: bool, default: ExistingAsset) -> ExistingAsset:
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing exclude each other")
    if overwrite:
        return ExistingAsset.overwrite
    return ExistingAsset.skip if skip_existing else default


def _id_template(text: str | None, explicit_id: str | None) -> IdTemplate:
    if text is not None and explicit_id is not None:
        raise UsageError("--id and --id-template exclude each other")
    return IdTemplate(text) if text is not None else IdTemplate()


def _asset_id(name: str) -> str:
    from .manifest import safe_id

    safe = safe_id(name)
    if safe is None:
        raise UsageError(f"unsafe asset id {name!r}: use letters, digits, '-', '_' or '.', without '/' or '..'")
    return safe


# ------------------------------------------------------------------------------------ batch
@app.command(epilog=BATCH_EXAMPLES)
@_interruptible
def batch(
    manifest: Annotated[str, typer.Argument(
        metavar="MANIFEST", help="CSV with columns image (required), back, id, seed, mode, preview, overrides "
                                 "(space-separated key=value); '-' reads it from stdin.", show_default=False)],
    overrides: OverridesArg = None,
    out: OutOpt = Path("outputs"),
    back: BackOpt = None,
    seed: SeedOpt = None,
    mode: ModeOpt = None,
    preview: PreviewOpt = None,
    id_template: IdTemplateOpt = None,
    overwrite: OverwriteOpt = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Keep finished assets and report them as "
                                                "skipped (the default: a re-run resumes).")] = False,
    no_resume: Annotated[bool, typer.Option("--no-resume", hidden=True, help="Old name of --overwrite.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed item.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Run only part i of n (0 <= i < n), split by id: "
                                                 "e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT.",
                                                 show_default=False)] = None,
    dry_run: DryRunOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Generate every asset of a CSV manifest (flags are row defaults); models load once, finished items are skipped."""
    _setup(quiet, debug)
    from .shard import parse_shard

    part = parse_shard(shard)
    ov = list(overrides or []) + _flag_overrides(seed=seed, mode=mode, preview=preview)
    existing = _existing_policy(overwrite or no_resume, skip_existing, default=ExistingAsset.skip)
    template = _id_template(id_template, None)
    cfg = _load(ov)
    from .batch import RunOptions, run_batch  # loads torch: after the checks that answer at once

    defaults = RowDefaults(back=back, seed=cfg.seed, mode=str(cfg.mode), id_template=template)
    options = RunOptions(existing=existing, fail_fast=fail_fast, dry_run=dry_run, debug=debug)
    with Progress(enabled=not quiet) as progress:
        summary = run_batch(manifest, out, ov, base=cfg, shard=part, defaults=defaults, options=options,
                            emit=partial(emit, progress=progress, stream=sys.stdout), progress=progress)
    raise typer.Exit(summary.exit_code)


# ------------------------------------------------------------------------------------ report
@app.command()
def report(
    out: Annotated[Path, typer.Argument(help="Output folder of a generate or batch run.", show_default=False)],
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write OUT/index.html: a review gallery of every asset (input, back view, previews, metadata, 3D view) and
    every failure with its reason. Serve the folder (python -m http.server) for the 3D views."""
    _setup(quiet, debug)
    from .report import write_report

    emit(write_report(out).event())


# ------------------------------------------------------------------------------------ demo
@app.command()
@_interruptible
def demo(
    out: OutOpt = Path("outputs/demo"),
    back: Annotated[str, typer.Option("--back", "-b", help="Back-side text for the demo asset.")
                    ] = "a large round handle",
    overrides: OverridesArg = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run the whole chain on tiny RANDOM models (CPU is fine): checks the install, not the quality."""
    _setup(quiet, debug)
    from .demo import run_demo

    with Progress(enabled=not quiet) as progress:
        result = run_demo(out, back, list(overrides or []), progress=progress)
    emit(result.event())


# ------------------------------------------------------------------------------------ models
@models_app.command("list")
def models_list(overrides: OverridesArg = None) -> None:
    """One JSON line per configured model: repo, licence, size, whether it is needed and present."""
    _setup(True, False)
    from . import hub

    cfg = _load(list(overrides or []))
    needed = hub.needed_models(cfg)
    for name in hub.MODEL_NAMES:
        spec = hub.spec_of(cfg, name)
        try:
            path, present = str(hub.resolve_local(cfg, name)), True
        except Know3dError:
            path, present = None, False
        emit({"event": "model", "name": name, "repo": spec.repo, "revision": spec.revision, "needed": name in needed,
              "present": present, "path": path, "licence": spec.licence, "gated": spec.gated,
              "commercial": spec.commercial, "size_gb": spec.size_gb})


@models_app.command("pull")
@_interruptible
def models_pull(
    names: Annotated[Optional[list[str]], typer.Argument(help="Model names (default: all the run needs); "
                                                              "key=value arguments are overrides.",
                                                         show_default=False)] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Download the configured models (only the files needed) at their pinned revisions."""
    _setup(quiet, debug)
    from . import hub

    args = list(names or [])
    overrides = [a for a in args if "=" in a]
    cfg = _load(overrides)
    wanted = [a for a in args if "=" not in a] or hub.needed_models(cfg)
    for name in wanted:
        spec = hub.spec_of(cfg, name)
        logger.info("pulling %s (%s, ~%.1f GB, licence: %s)", name, spec.repo, spec.size_gb, spec.licence)
        model = hub.pull(cfg, name)
        emit({"event": "model", "name": name, "repo": model.repo, "revision": model.revision, "path": str(model.path),
              "present": True})


@models_app.command("verify")
def models_verify(overrides: OverridesArg = None) -> None:
    """Check that every model the run needs is present and its files are complete (exit 3 if not)."""
    _setup(True, False)
    from . import hub
    from .errors import EXIT_MISSING

    cfg = _load(list(overrides or []))
    bad = 0
    for name in hub.needed_models(cfg):
        report = hub.verify(cfg, name)
        bad += not report.ok
        emit({"event": "verify", "name": name, "repo": report.repo, "ok": report.ok, "present": report.present,
              "path": report.path, "files": report.files, "bytes": report.bytes, "problems": report.problems})
    if bad:
        raise typer.Exit(EXIT_MISSING)


# ------------------------------------------------------------------------------------ train
class _TrainGroup(typer.core.TyperGroup):
    """`know3d train [OVERRIDES]` is `know3d train run [OVERRIDES]`: arguments that name no subcommand go to `run`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


TRAIN_EXAMPLES = """
Examples:

  know3d train train.dataset=data/know3d train.output_dir=runs/ss

  know3d train train=shape_512 train.dataset=data/know3d --resume latest

  accelerate launch --num_processes 8 -m know3d_cli train train.dataset=data/know3d train.batch_size=64

  know3d train export runs/ss --out adapters/mine

  know3d train editor-lora train.dataset=data/know3d train.editor_lora.steps=2000
"""

train_app = typer.Typer(cls=_TrainGroup, no_args_is_help=True, epilog=TRAIN_EXAMPLES,
                        help="Train the Know3D adapter (or a TRELLIS.2 flow) and the editor's back-view LoRA.")
app.add_typer(train_app, name="train")


@train_app.command("run", epilog=TRAIN_EXAMPLES)
def train_run(
    overrides: OverridesArg = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Continue from 'latest' (in train.output_dir) "
                                                  "or from a checkpoint folder.")] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train with the `train.*` settings (the default subcommand: `know3d train OVERRIDES` runs this)."""
    _setup(quiet, debug)
    from .train import run_training

    run_training(_load(list(overrides or [])), resume=resume, emit=emit)


@train_app.command("export")
def train_export(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint folder (checkpoints/step-N) or a run folder "
                                                    "(its newest checkpoint).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the exported files (adapter.weights=OUT).")],
    raw: Annotated[bool, typer.Option("--raw", help="Export the raw weights instead of the EMA.")] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write what inference loads: <stage>.json + .safetensors (adapter), or ckpts/<name>.* (full flow)."""
    _setup(quiet, debug)
    from .train import export_checkpoint

    result = export_checkpoint(checkpoint, out, use_ema=not raw)
    emit({"event": "export", "checkpoint": str(result.checkpoint), "weights": result.weights,
          "files": [str(f) for f in result.files]})


@train_app.command("editor-lora")
def train_editor_lora(overrides: OverridesArg = None, quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """LoRA of the editor's MMDiT on the dataset's front -> back render pairs (train.editor_lora.*)."""
    _setup(quiet, debug)
    from .train.editor_lora import train_editor_lora as run

    run(_load(list(overrides or [])), emit=emit)


# ------------------------------------------------------------------------------------ data
DATA_EXAMPLES = """
Examples:

  know3d data build assets/ --out data/know3d

  know3d data build assets.csv --out data/know3d data.ovoxel.resolution=512 data.prompts.variants=8

  know3d data build 'objaverse/**/*.glb' --out /shared/know3d --shard $SLURM_ARRAY_TASK_ID/64

  know3d data inspect data/know3d
"""

data_app = typer.Typer(no_args_is_help=True, epilog=DATA_EXAMPLES,
                       help="Build and inspect Know3D training datasets from 3D assets.")
app.add_typer(data_app, name="data")


@data_app.command("build", epilog=DATA_EXAMPLES)
@_interruptible
def data_build(
    assets: Annotated[str, typer.Argument(help="A folder, a quoted glob, or a CSV (columns asset, id, caption) of "
                                               "GLB/glTF/OBJ/PLY files.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder (shards may share it).")],
    overrides: OverridesArg = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Build only shard i of n (i/n, from 0), split by "
                                                 "sample id.")] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Latents, renders and cached conditions of every asset; finished samples are skipped."""
    _setup(quiet, debug)
    from .data.build import run_build
    from .shard import parse_shard

    part = parse_shard(shard)
    cfg = _load(list(overrides or []))
    with Progress(enabled=not quiet) as progress:
        summary = run_build(assets, out, cfg, part, emit=partial(emit, progress=progress), progress=progress,
                            debug=debug)
    raise typer.Exit(summary.exit_code)


@data_app.command("inspect")
def data_inspect(
    dataset: Annotated[Path, typer.Argument(help="A dataset folder written by `know3d data build`.",
                                            show_default=False)],
    sheet: Annotated[Optional[Path], typer.Option("--sheet", help="Contact sheet PNG (default: "
                                                  "DATASET/contact_sheet.png).")] = None,
    samples: Annotated[int, typer.Option("--samples", min=0, help="Samples shown on the contact sheet.")] = 8,
) -> None:
    """One JSON object: counts, sizes, failures; and a contact sheet (front, back, occupancy from behind)."""
    _setup(True, False)
    from .data.inspect import inspect_dataset

    emit(inspect_dataset(dataset, sheet, samples))


# ------------------------------------------------------------------------------------ doctor, config
@app.command()
def doctor(out: OutOpt = Path("outputs"), overrides: OverridesArg = None) -> None:
    """Print one JSON object describing this machine, the models and their licences."""
    _setup(True, False)
    from .doctor import report

    emit(report(_load(list(overrides or [])), out))


@config_app.command("show")
def config_show(overrides: OverridesArg = None) -> None:
    """Print the composed configuration (YAML) with the overrides applied."""
    _setup(True, False)
    from .config import to_yaml

    sys.stdout.write(to_yaml(_load(list(overrides or []))))


@app.callback(invoke_without_command=True)
def _version(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        sys.stdout.write(f"know3d {__version__}\n")
        raise typer.Exit(0)


# ------------------------------------------------------------------------------------ entry point
def main(argv: list[str] | None = None) -> int:
    """Run the app; map known errors to one stderr line and their exit code."""
    try:
        # without standalone mode Click returns the code of `typer.Exit` instead of raising it
        code = app(args=argv, standalone_mode=False)
        return code if isinstance(code, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except Know3dError as exc:
        _fail(str(exc), exc.exit_code, exc)
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        _fail("interrupted", EXIT_INTERRUPTED, None)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed by its reader (`| head`): stop quietly, as other tools do
        _silence_stdout()
        _fail("stdout was closed before all output was written", EXIT_RUNTIME, None)
        return EXIT_RUNTIME
    except Exception as exc:
        # Click's usage errors (Typer vendors Click, so match them by their interface, not by class)
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `know3d` (or `know3d models`): help was printed
            return EXIT_OK
        format_message = getattr(exc, "format_message", None)
        if callable(format_message) and hasattr(exc, "exit_code"):
            _fail(format_message(), EXIT_USAGE, None)
            return EXIT_USAGE
        _fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_RUNTIME, exc)
        return EXIT_RUNTIME


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _fail(message: str, code: int, exc: BaseException | None) -> None:
    if _DEBUG["on"] and exc is not None:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    line = " ".join(message.split())
    hint = "" if _DEBUG["on"] or code == EXIT_INTERRUPTED else " (run with --debug for details)"
    sys.stderr.write(f"error: {line}{hint}\n".encode("utf-8", "backslashreplace").decode("utf-8"))
    sys.stderr.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
