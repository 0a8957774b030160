"""The chain: preprocess -> (MLLM) -> editor tap -> TRELLIS.2 -> export, and the asset folder it writes.

This module only wires the stages. What it builds on: the mode (`run_plan.py`), the models and their residency
(`stage_models.py`), the asset folder made from the stages' results (`asset_run.py`), written all or nothing under
the asset's lock (`outputs.py`).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import metadata
from .asset_run import AssetJob, AssetRun, RunContext, StageTimings
from .config import Know3dConfig, Mode, recorded_settings
from .errors import ConfigError
from .geometry import Asset3D
from .io import ensure_writable_dir
from .outputs import AssetLock, check_asset_path, write_asset
from .progress import Progress
from .run_plan import plan_run
from .runtime import resolve_runtime
from .stage_models import StageModels
from .timing import timed_stages

if TYPE_CHECKING:
    from .preprocess import PreparedImage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerateResult:
    id: str
    dir: Path  # <out>/<id>
    status: str  # "ok" | "skipped"
    metadata: dict[str, Any] = field(repr=False)
    asset: Asset3D | None = field(default=None, repr=False)  # the generated asset (in-process callers; not for skips)

    def event(self) -> dict[str, Any]:
        """The asset's line on stdout."""
        return {"event": "asset", "id": self.id, "status": self.status, "dir": str(self.dir), "error": None,
                "mode": self.metadata.get("mode", {}).get("used"), "seed": self.metadata.get("seed"),
                "files": self.metadata.get("files", [])}


class Know3dPipeline:
    """Runs assets through the chain. Everything that can be checked is checked here, before any model loads;
    models load on first use, and a batch (`keep_models=True`) keeps them for later assets."""

    def __init__(self, cfg: Know3dConfig, progress: Progress | None = None, keep_models: bool = False):
        self.cfg = cfg
        self.progress = progress or Progress(enabled=False)
        plan = plan_run(cfg)
        runtime = resolve_runtime(cfg.runtime)
        self.models = StageModels(cfg, plan, runtime, keep=keep_models)
        self.context = RunContext(cfg, recorded_settings(cfg), plan, self.models.resolved, runtime)
        self._text_limit = _editor_text_limit(cfg, self.models)

    def expected_key(self, job: AssetJob, input_sha256: str) -> str:
        return self.context.key(job, input_sha256)

    def check_job(self, job: AssetJob, out_root: Path) -> None:
        """Everything about one asset that can be checked before any model runs: the output folder can take it,
        and the back text is valid and fits the editor's text context (exit 2 otherwise)."""
        from .mllm import P_VIEW, build_back_prompt, check_text_encodable

        ensure_writable_dir(out_root)
        check_asset_path(out_root, job.id)
        check_text_encodable(job.back)
        if self._text_limit is not None:
            self._text_limit.check(build_back_prompt(job.back).instruction, P_VIEW)

    def prepare(self, image: Path) -> PreparedImage:
        """The chain's first stage, alone for `--dry-run`: the masked, cropped image. It starts the asset's stage
        sequence."""
        from .preprocess import prepare_image

        self.models.start_asset()
        with self.models.using("birefnet") as masker:
            return prepare_image(image, self.cfg.preprocess, birefnet=masker)

    def run(self, job: AssetJob, out_root: Path, *, locked: bool = False) -> GenerateResult:
        """Generate one asset into `out_root/job.id`; nothing is written unless every stage succeeded.

        The asset's `AssetLock` is taken for the run (waiting while another process makes the same asset) unless
        the caller holds it already (`locked=True`, batch).
        """
        self.check_job(job, out_root)
        if locked:
            return self._write(self._generate(job), out_root)
        with AssetLock(out_root, job.id):
            return self._write(self._generate(job), out_root)

    def _generate(self, job: AssetJob) -> AssetRun:
        """The chain, for one asset."""
        from .export import encode_mesh, render_previews
        from .mllm import build_back_prompt

        cfg, models, plan = self.cfg, self.models, self.context.plan
        environment = metadata.RunEnvironment.capture(str(self.context.runtime.device))
        seed = job.seed if job.seed is not None else secrets.randbelow(2**31)
        timings = StageTimings()
        stage = _StageClock(self.progress, job.id, timings.stages)

        with stage("preprocess"):
            prepared = self.prepare(job.image)
        expansion = None
        if cfg.mllm.expand:
            with stage("mllm"), models.using("mllm") as expander:
                expansion = expander.describe(prepared.image, job.back)
        prompt = build_back_prompt(job.back, expansion.text if expansion is not None else None)
        tap = None
        if plan.uses_editor:
            from .editor import imagine_back  # diffusers' Qwen-Image pipelines: seconds to import, not needed without

            with stage("editor"), models.using("editor") as editor:
                tap = imagine_back(editor, prepared.image, prompt.instruction, cfg.editor, cfg.tap,
                                   preview=cfg.preview, generator=torch.Generator("cpu").manual_seed(seed),
                                   need_full_image=plan.mode is Mode.multiview, on_step=self.progress.steps)
        with stage("trellis2"), models.using("trellis2") as trellis:
            generated = trellis(prepared.image, seed=seed,
                                back_view=tap.preview if plan.mode is Mode.multiview else None,
                                editor_tokens=tap.hidden if plan.mode is Mode.know3d else None,
                                stage_hook=timed_stages(timings.trellis2, self.progress.note),
                                on_step=self.progress.steps)
        with stage("export"):
            mesh = encode_mesh(generated.asset, cfg.export, timings.export)
        with stage("preview"):
            previews = render_previews(mesh, cfg.export, timings.export)
        return AssetRun(job, seed, environment, prepared, expansion, prompt, tap, generated, mesh, previews, timings)

    def _write(self, run: AssetRun, out_root: Path) -> GenerateResult:
        files = run.files(self.context)
        meta = run.metadata(self.context, sorted(files))
        files[metadata.METADATA_FILE] = metadata.to_json_bytes(meta)
        return GenerateResult(run.job.id, write_asset(out_root, run.job.id, files), "ok", meta, run.generated.asset)


class _StageClock:
    """`with stage(name):` shows the stage in the progress display and records its seconds."""

    def __init__(self, progress: Progress, asset: str, timings: dict[str, float]):
        self.progress, self.asset, self.timings = progress, asset, timings

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        with self.progress.stage(name, self.asset):
            yield
        self.timings[name] = round(time.perf_counter() - start, 4)
        logger.info("%s: %s done in %.2f s", self.asset, name, self.timings[name])


def _editor_text_limit(cfg: Know3dConfig, models: StageModels):
    """The editor's instruction-length check, after checking `tap.block` against its depth; None without an
    editor (exit 2 for a block out of range)."""
    if "editor" not in models.resolved:
        return None
    from .editor import InstructionLimit, transformer_depth

    path = models.resolved["editor"].path
    depth = transformer_depth(path)
    if depth is not None and not 0 <= cfg.tap.block < depth:
        raise ConfigError(f"tap.block={cfg.tap.block} is out of range: the editor transformer has {depth} blocks "
                          f"(0-{depth - 1})")
    return InstructionLimit(path)


__all__ = ["AssetJob", "GenerateResult", "Know3dPipeline"]
