"""The chain: preprocess -> (MLLM) -> editor tap -> TRELLIS.2 -> export, and the files it writes.

Each stage takes and returns typed data; this module only wires them, decides the mode, checks everything it
can before any model loads, owns model residency (one stage on the GPU at a time with sequential offload) and
writes the asset folder all or nothing under the asset's lock (`outputs.py`).
"""

from __future__ import annotations

import io
import logging
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import torch
from PIL import Image

from . import hub, metadata
from .config import Background, Know3dConfig, Mode, Preview, to_container
from .errors import ConfigError, ModelMissingError
from .io import ensure_writable_dir
from .outputs import AssetLock, check_asset_path, write_asset
from .progress import Progress
from .runtime import (
    Runtime,
    oom_as_error,
    peak_memory,
    reset_peak_memory,
    resident,
    resolve_runtime,
)
from .timing import timed_stages

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssetJob:
    image: Path  # input photo
    id: str  # output folder name (already checked to be safe)
    back: str = ""  # text about the hidden back side
    seed: int | None = None  # None = random (drawn and recorded)


@dataclass(frozen=True)
class GenerateResult:
    id: str
    dir: Path  # <out>/<id>
    status: str  # "ok" | "skipped"
    metadata: dict[str, Any] = field(repr=False)

    def event(self) -> dict[str, Any]:
        """The asset's line on stdout."""
        return {"event": "asset", "id": self.id, "status": self.status, "dir": str(self.dir), "error": None,
                "mode": self.metadata.get("mode", {}).get("used"), "seed": self.metadata.get("seed"),
                "files": self.metadata.get("files", [])}


def resolve_mode(cfg: Know3dConfig) -> tuple[str, list[str]]:
    """The mode that will run, and warnings to record. `know3d` needs adapter weights (exit 3 without)."""
    warnings = []
    if cfg.mode == "know3d" and not cfg.adapter.weights:
        raise ModelMissingError(
            "mode=know3d needs Know3D adapter weights: set adapter.weights=DIR (a folder with <stage>.json and "
            "<stage>.safetensors for each of adapter.stages), or use --mode multiview"
        )
    if cfg.mode == "auto":
        if cfg.adapter.weights:
            return "know3d", warnings
        msg = "no Know3D adapter weights configured (adapter.weights); using training-free multiview mode"
        logger.warning(msg)
        warnings.append(msg)
        return "multiview", warnings
    return cfg.mode, warnings


def adapter_dir(cfg: Know3dConfig) -> Path:
    """The adapter directory, checked to hold a file pair for every stage in `adapter.stages` (exit 3 if not)."""
    path = Path(str(cfg.adapter.weights)).expanduser()
    missing = [f"{stage}.{ext}" for stage in cfg.adapter.stages for ext in ("json", "safetensors")
               if not (path / f"{stage}.{ext}").is_file()]
    if missing:
        raise ModelMissingError(f"Know3D adapter not found: {path} lacks {', '.join(missing)}")
    if not cfg.adapter.stages:
        raise ModelMissingError("mode=know3d with adapter.stages=[] would not use the adapter; name at least one stage")
    return path


class Know3dPipeline:
    """Runs assets through the chain. Models load on first use and stay loaded for later assets (batch)."""

    def __init__(self, cfg: Know3dConfig, progress: Progress | None = None, keep_models: bool = False):
        self.cfg = cfg
        self.runtime: Runtime = resolve_runtime(cfg.runtime)
        self.mode, self.mode_warnings = resolve_mode(cfg)
        self.progress = progress or Progress(enabled=False)
        self.keep_models = keep_models
        self._models: dict[str, hub.ResolvedModel] = {}
        self._loaded: dict[str, Any] = {}
        self._config = to_container(cfg)
        self._check()

    # ------------------------------------------------------------------------------- set-up
    def _check(self) -> None:
        """Fail before any work: every model the run needs is on disk, settings fit the mode."""
        self.adapter_dir = adapter_dir(self.cfg) if self.mode == "know3d" else None
        for name in hub.needed_models(self._cfg_for_mode()):
            self._models[name] = hub.resolve(self.cfg, name)
        if self.cfg.preprocess.background is Background.auto:  # BiRefNet when its weights were pulled
            try:
                self._models["birefnet"] = hub.resolve(replace(self.cfg, models=replace(
                    self.cfg.models, allow_download=False)), "birefnet")
            except ModelMissingError:
                pass
        self._text_limit = None
        if "editor" in self._models:
            from .editor import InstructionLimit, transformer_depth

            self._text_limit = InstructionLimit(self._models["editor"].path)
            depth = transformer_depth(self._models["editor"].path)
            if depth is not None and not 0 <= self.cfg.tap.block < depth:
                raise ConfigError(f"tap.block={self.cfg.tap.block} is out of range: the editor transformer has "
                                  f"{depth} blocks (0-{depth - 1})")

    def _cfg_for_mode(self) -> Know3dConfig:
        if self.mode == self.cfg.mode:
            return self.cfg
        return replace(self.cfg, mode=self.mode)

    def _masker(self):
        """The BiRefNet background remover: `preprocess.background=birefnet`, or `auto` with its weights on disk."""
        if "birefnet" not in self._models or self.cfg.preprocess.background not in (Background.birefnet,
                                                                                    Background.auto):
            return None
        if "birefnet" not in self._loaded:
            from .preprocess import BiRefNetMasker

            self._loaded["birefnet"] = BiRefNetMasker(self._models["birefnet"].path, device=self.runtime.device)
        return self._loaded["birefnet"]

    def _editor(self):
        if "editor" not in self._loaded:
            from .editor import load_editor

            self._loaded["editor"] = load_editor(self._models["editor"].path, self.cfg.editor, self.runtime)
        return self._loaded["editor"]

    def _expander(self):
        if "mllm" not in self._loaded:
            from .mllm import BackViewExpander

            self._loaded["mllm"] = BackViewExpander(self._models["mllm"].path, self.cfg.mllm, self.runtime)
        return self._loaded["mllm"]

    def _trellis(self):
        if "trellis2" not in self._loaded:
            from .trellis2 import Trellis2Pipeline

            runtime = self.runtime
            self._loaded["trellis2"] = Trellis2Pipeline.from_pretrained(
                self._models["trellis2"].path,
                dinov3_dir=self._models["dinov3"].path,
                ss_decoder_dir=self._models["ss_decoder"].path,
                adapter_dir=self.adapter_dir,
                settings=self.cfg.trellis2,
                adapter=self.cfg.adapter,
                device=runtime.device,
                precision=runtime.trellis2_precision,
                offload=runtime.offload,
                attention=runtime.attention,
                sparse_conv=runtime.sparse_conv,
                compile=runtime.compile,
            )
        return self._loaded["trellis2"]

    def release_models(self) -> None:
        """Free every loaded model (a batch moving on to rows with other settings)."""
        self._loaded.clear()
        if self.runtime.is_cuda:
            torch.cuda.empty_cache()

    def _release(self, name: str) -> None:
        """A single run frees a stage's models as soon as it is done (batch keeps them)."""
        if not self.keep_models:
            self._loaded.pop(name, None)
            if self.runtime.is_cuda:
                torch.cuda.empty_cache()

    # ------------------------------------------------------------------------------- running
    def expected_key(self, job: AssetJob, input_sha256: str) -> str:
        return metadata.run_key(input_sha256, job.back, job.seed, self._config)

    def check_job(self, job: AssetJob, out_root: Path) -> None:
        """Everything about one asset that can be checked before any model runs: the output folder can take it,
        and the back text is valid and fits the editor's text context (exit 2 otherwise)."""
        from .mllm import P_VIEW, build_back_prompt, check_text_encodable

        ensure_writable_dir(out_root)
        check_asset_path(out_root, job.id)
        check_text_encodable(job.back)
        if self._text_limit is not None:
            self._text_limit.check(build_back_prompt(job.back).instruction, P_VIEW)

    def prepare(self, image: Path):
        """Preprocessing only (`--dry-run`, and the chain's first stage): the masked, cropped `PreparedImage`."""
        from .preprocess import prepare_image

        return prepare_image(image, self.cfg.preprocess, birefnet=self._masker())

    def run(self, job: AssetJob, out_root: Path, *, locked: bool = False) -> GenerateResult:
        """Generate one asset into `out_root/job.id`; nothing is written unless every stage succeeded.

        The asset's `AssetLock` is taken for the run (waiting while another process makes the same asset) unless
        the caller holds it already (`locked=True`, batch).
        """
        self.check_job(job, out_root)
        if locked:
            return self._generate(job, out_root)
        with AssetLock(out_root, job.id):
            return self._generate(job, out_root)

    def _generate(self, job: AssetJob, out_root: Path) -> GenerateResult:
        from .export import encode_mesh
        from .mllm import build_back_prompt
        cfg, runtime = self.cfg, self.runtime
        environment = metadata.RunEnvironment.capture(str(runtime.device))
        seed = job.seed if job.seed is not None else secrets.randbelow(2**31)
        timings: dict[str, float] = {}
        warnings = list(self.mode_warnings)
        reset_peak_memory(runtime)

        with self._timed("preprocess", job.id, timings):
            prepared = self.prepare(job.image)
            warnings += prepared.warnings
        self._release("birefnet")

        expanded = None
        if cfg.mllm.expand:
            with self._timed("mllm", job.id, timings), oom_as_error("back-view description (mllm)"):
                expander = self._expander()
                with resident(expander, runtime):
                    expansion = expander.describe(prepared.image, job.back)
                expanded = expansion.text
                warnings += expansion.warnings
            self._release("mllm")
        prompt = build_back_prompt(job.back, expanded)

        tap = None
        if self.mode != "trellis":
            with self._timed("editor", job.id, timings), oom_as_error("back-view imagination (editor)"):
                from .editor import imagine_back

                editor = self._editor()
                generator = torch.Generator("cpu").manual_seed(seed)
                with resident(editor, runtime):
                    tap = imagine_back(editor, prepared.image, prompt.instruction, cfg.editor, cfg.tap,
                                       preview=cfg.preview, generator=generator,
                                       need_full_image=self.mode == "multiview")
            self._release("editor")

        with self._timed("trellis2", job.id, timings), oom_as_error("3D generation (TRELLIS.2)"):
            trellis = self._trellis()
            back_view = tap.preview if (self.mode == "multiview" and tap is not None) else None
            editor_tokens = tap.hidden if self.mode == "know3d" and tap is not None else None
            trellis_timings: dict[str, float] = {}
            generated = trellis(prepared.image, back_view=back_view, editor_tokens=editor_tokens, seed=seed,
                                stage_hook=timed_stages(trellis_timings, self.progress.note),
                                on_step=self.progress.steps)
            asset = generated.asset
            warnings += generated.warnings
        self._release("trellis2")

        with self._timed("export", job.id, timings):
            export_timings: dict[str, float] = {}
            mesh = encode_mesh(asset, cfg.export, export_timings)
            files: dict[str, bytes] = {f"model.{mesh.extension}": mesh.data, "input.png": _png(prepared.rgba)}
            preview_used = Preview.none
            if tap is not None and tap.preview is not None and cfg.preview is not Preview.none:
                files["back.png"] = _png(tap.preview)
                finished = cfg.preview is Preview.full or self.mode == Mode.multiview  # multiview runs the full edit
                preview_used = Preview.full if finished else Preview.x0

        meta = {
            "schema_version": metadata.SCHEMA_VERSION,
            "id": job.id,
            "key": self.expected_key(job, prepared.sha256),
            "input": {"path": str(job.image), "absolute_path": str(job.image.resolve()), "sha256": prepared.sha256,
                      "mask_source": prepared.mask_source, "mask_warnings": list(prepared.mask_warnings),
                      "original_size": list(prepared.original_size)},
            "run": environment.as_dict(),
            "back": job.back,
            "prompt": {"editor": prompt.instruction if tap is not None else None, "expanded": expanded},
            "mode": {"requested": cfg.mode, "used": self.mode},
            "preview": {"requested": cfg.preview, "used": preview_used},
            "seed": seed,
            "seed_requested": job.seed,
            "models": {name: {"repo": m.repo, "revision": m.revision, "path": str(m.path)}
                       for name, m in self._models.items()},
            "adapter": str(self.adapter_dir) if self.adapter_dir is not None else None,
            "tap": _tap_meta(tap, cfg),
            "forwards": {"editor": tap.forwards if tap is not None else 0, "trellis2": generated.total_forwards,
                         "trellis2_per_run": generated.forwards},
            "trellis2": {"pipeline_type": str(generated.pipeline_type), "resolution": generated.resolution,
                         "tokens": generated.tokens, "timings_s": _rounded(trellis_timings)},
            "export": {"format": mesh.extension, "timings_s": _rounded(export_timings),
                       "mesh": metadata.exported_summary(files, f"model.{mesh.extension}")},
            "geometry": {"source_stage": asset.source_stage, "resolution": asset.resolution,
                         "vertices": mesh.vertices, "faces": mesh.faces, "textured": asset.textured,
                         "generated": {"vertices": int(asset.vertices.shape[0]), "faces": int(asset.faces.shape[0])}},
            "timings_s": timings,
            "peak_memory": peak_memory(runtime),
            "device": str(runtime.device),
            "dtype": str(runtime.dtype).replace("torch.", ""),
            "versions": metadata.package_versions(),
            "warnings": warnings,
            "files": sorted(files) + [metadata.METADATA_FILE],
            "config": {**self._config, "back": job.back, "seed": seed},  # as run: the job's text and seed
        }
        files[metadata.METADATA_FILE] = metadata.to_json_bytes(meta)
        out_dir = write_asset(out_root, job.id, files)
        return GenerateResult(job.id, out_dir, "ok", meta)

    @contextmanager
    def _timed(self, stage: str, asset: str, timings: dict[str, float]) -> Iterator[None]:
        start = time.perf_counter()
        with self.progress.stage(stage, asset):
            yield
        timings[stage] = round(time.perf_counter() - start, 4)
        logger.info("%s: %s done in %.2f s", asset, stage, timings[stage])


def _tap_meta(tap, cfg: Know3dConfig) -> dict[str, Any] | None:
    if tap is None:
        return None
    return {"block": cfg.tap.block, "step_frac": cfg.tap.step_frac, "step_index": tap.step_index,
            "timestep": tap.timestep, "sigma": tap.sigma, "grid": list(tap.grid), "tokens": cfg.tap.tokens,
            "shape": list(tap.hidden.shape)}


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {step: round(seconds, 4) for step, seconds in timings.items()}


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["AssetJob", "GenerateResult", "Know3dPipeline", "resolve_mode"]
