"""One asset through the chain: the job, what each stage returned, and the asset folder made from them (the files
and `metadata.json`, each metadata section read from one stage's result)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from . import metadata
from .config import Know3dConfig, Mode, Preview, TapConfig
from .hub import ResolvedModel
from .run_plan import RunPlan
from .runtime import Runtime, peak_memory

if TYPE_CHECKING:
    from .editor import EditorTap
    from .export import EncodedMesh, Previews
    from .mllm import BackViewExpansion, BackViewPrompt
    from .preprocess import PreparedImage
    from .trellis2 import Trellis2Output


@dataclass(frozen=True)
class AssetJob:
    image: Path  # input photo
    id: str  # output folder name (already checked to be safe)
    back: str = ""  # text about the hidden back side
    seed: int | None = None  # None = random (drawn and recorded)


@dataclass(frozen=True)
class RunContext:
    """What the assets of one pipeline share, as their metadata records it."""

    cfg: Know3dConfig
    config: dict[str, Any]  # `cfg` as plain data: recorded, and hashed into the resume key
    plan: RunPlan
    models: Mapping[str, ResolvedModel]  # the models the run uses, by config name
    runtime: Runtime

    def key(self, job: AssetJob, input_sha256: str) -> str:
        """The resume key: same key and a complete folder = nothing to redo."""
        return metadata.run_key(input_sha256, job.back, job.seed, self.config)


@dataclass
class StageTimings:
    """Seconds spent, filled in as the chain runs."""

    stages: dict[str, float] = field(default_factory=dict)  # per chain stage: preprocess, mllm, editor, ...
    trellis2: dict[str, float] = field(default_factory=dict)  # per TRELLIS.2 stage: condition, ss, shape, ...
    export: dict[str, float] = field(default_factory=dict)  # per export step: decimate, uv_unwrap, ...


@dataclass(frozen=True)
class AssetRun:
    """What each stage returned for one asset."""

    job: AssetJob
    seed: int  # the seed used: `job.seed`, or drawn
    environment: metadata.RunEnvironment  # when, where and how the run started
    prepared: PreparedImage
    expansion: BackViewExpansion | None  # None unless `mllm.expand`
    prompt: BackViewPrompt
    tap: EditorTap | None  # None in trellis mode
    generated: Trellis2Output
    mesh: EncodedMesh
    previews: Previews  # preview.png / turntable.webp rendered from the exported files
    timings: StageTimings

    def back_preview(self, context: RunContext) -> Preview:
        """What back.png shows: nothing, the x0 estimate at the tap, or the finished edit (multiview always
        finishes the edit it conditions on)."""
        if self.tap is None or self.tap.preview is None or context.cfg.preview is Preview.none:
            return Preview.none
        finished = context.cfg.preview is Preview.full or context.plan.mode is Mode.multiview
        return Preview.full if finished else Preview.x0

    def files(self, context: RunContext) -> dict[str, bytes]:
        """The asset folder's files by name, but for `metadata.json`."""
        files = {**self.mesh.files, "input.png": input_png(self.prepared), **self.previews.files}
        if self.back_preview(context) is not Preview.none:
            files["back.png"] = _png(self.tap.preview)
        return files

    def metadata(self, context: RunContext, files: list[str]) -> dict[str, Any]:
        """metadata.json: what was run, with which models and settings, and how long it took; `files` are the
        other files of the folder."""
        job, cfg, plan, runtime = self.job, context.cfg, context.plan, context.runtime
        return {
            "schema_version": metadata.SCHEMA_VERSION,
            "id": job.id,
            "key": context.key(job, self.prepared.sha256),
            "input": _input_section(job, self.prepared),
            "run": self.environment.as_dict(),
            "back": job.back,
            "prompt": {"editor": self.prompt.instruction if self.tap is not None else None,
                       "expanded": self.prompt.expanded},
            "mode": {"requested": cfg.mode, "used": plan.mode},
            "preview": {"requested": cfg.preview, "used": self.back_preview(context)},
            "seed": self.seed,
            "seed_requested": job.seed,
            "models": {name: {"repo": m.repo, "revision": m.revision, "path": str(m.path)}
                       for name, m in context.models.items()},
            "adapter": str(plan.adapter_dir) if plan.adapter_dir is not None else None,
            "tap": _tap_section(self.tap, cfg.tap),
            "forwards": {"editor": self.tap.forwards if self.tap is not None else 0,
                         "trellis2": self.generated.total_forwards, "trellis2_per_run": self.generated.forwards},
            "trellis2": _trellis2_section(self.generated, self.timings.trellis2),
            "export": {"format": self.mesh.extension, "timings_s": _rounded(self.timings.export),
                       **self.mesh.summary(), "preview": self.previews.info},
            "geometry": _geometry_section(self.generated, self.mesh),
            "timings_s": self.timings.stages,
            "peak_memory": peak_memory(runtime),
            "device": str(runtime.device),
            "dtype": str(runtime.dtype).replace("torch.", ""),
            "versions": metadata.package_versions(),
            "warnings": self.warnings(plan),
            "files": [*files, metadata.METADATA_FILE],
            "config": {**context.config, "back": job.back, "seed": self.seed},  # as run: the job's text and seed
        }

    def warnings(self, plan: RunPlan) -> list[str]:
        """Every stage's warnings, in chain order."""
        expansion = self.expansion.warnings if self.expansion is not None else ()
        return [*plan.warnings, *self.prepared.warnings, *expansion, *self.generated.warnings, *self.previews.warnings]


def _input_section(job: AssetJob, prepared: PreparedImage) -> dict[str, Any]:
    return {"path": str(job.image), "absolute_path": str(job.image.resolve()), "sha256": prepared.sha256,
            "mask_source": prepared.mask_source, "mask_warnings": list(prepared.mask_warnings),
            "original_size": list(prepared.original_size)}


def _tap_section(tap: EditorTap | None, cfg: TapConfig) -> dict[str, Any] | None:
    if tap is None:
        return None
    return {"block": cfg.block, "step_frac": cfg.step_frac, "step_index": tap.step_index,
            "timestep": tap.timestep, "sigma": tap.sigma, "grid": list(tap.grid), "tokens": cfg.tokens,
            "shape": list(tap.hidden.shape)}


def _trellis2_section(generated: Trellis2Output, timings: dict[str, float]) -> dict[str, Any]:
    return {"pipeline_type": str(generated.pipeline_type), "resolution": generated.resolution,
            "tokens": generated.tokens, "timings_s": _rounded(timings)}


def _geometry_section(generated: Trellis2Output, mesh: EncodedMesh) -> dict[str, Any]:
    asset = generated.asset
    return {"source_stage": asset.source_stage, "resolution": asset.resolution, "vertices": mesh.vertices,
            "faces": mesh.faces, "textured": asset.textured,
            "generated": {"vertices": int(asset.vertices.shape[0]), "faces": int(asset.faces.shape[0])}}


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {step: round(seconds, 4) for step, seconds in timings.items()}


def input_png(prepared: PreparedImage) -> bytes:
    """`input.png`: the cropped RGBA that conditioned the models (also what `--dry-run` writes)."""
    return _png(prepared.rgba)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["AssetJob", "AssetRun", "RunContext", "StageTimings", "input_png"]
