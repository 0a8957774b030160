"""`know3d data build`: 3D assets -> a Know3D training dataset (`schema.py`), resumable, sharded, asset by asset.

The assets of this shard (`--shard i/n`, split by sample id) go through the chain in groups of `data.group_size`;
each phase runs over the whole group with its models resident on the device (with `runtime.offload=sequential`
each model moves to the GPU once per group, not once per asset):

1. `geometry`: load and normalise the asset, its O-Voxel at `data.ovoxel.resolution` (rounded to 8 bits with
   `data.quantize`), the shape/texture/SS latents (`latents.py`), the front and back renders (`views.py`);
2. `dinov3`: the front render's tokens at `data.dino_resolutions`;
3. `text`: the back parts (the CSV caption, else Qwen2.5-VL on both renders, per `data.text.source`) and the K prompt
   variants (`prompts.py`);
4. `editor`: H_DiT of every variant;
5. the sample is written whole (`writer.py`) and indexed.

A sample's randomness (view angles, prompt variants, editor noise) comes from `data.seed` and its id only, so a
sample is the same whichever shard, group or run builds it. Each asset succeeds or fails on its own: a failure is
one JSON line with the reason, in `failures/<shard>.jsonl` and on stdout. Finished samples are skipped, so a
killed or interrupted build resumes where it stopped; Ctrl-C ends after the summary (exit 130), and so does a full
disk (`stopped` in the summary, exit 4).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .. import hub, metadata
from ..config import DataLatents, Know3dConfig, TextSource, to_container
from ..errors import ConfigError, Know3dError, OutOfMemory, WriteFailure, run_exit_code
from ..preprocess import file_sha256
from ..progress import Progress
from ..runtime import resolve_runtime
from ..shard import Shard, stable_hash
from ..timing import timed
from ..trellis2 import Residency
from .asset import load_asset
from .conditions import caption_text, described_text, dino_tokens, tapped_states
from .latents import encode_latents
from .ovoxel import asset_to_ovoxel
from .prompts import prompt_variants
from .schema import SCHEMA_VERSION
from .sources import AssetSource
from .views import draw_view_angles, occupancy_azimuth, render_view_pair
from .writer import DatasetWriter, Sample

logger = logging.getLogger(__name__)

# The models of the build's phases, in the order a group of assets uses them (the offload order).
PHASE_MODELS = ("encoders", "dinov3", "mllm", "editor")

SHAPE_RESOLUTIONS = (512, 1024)  # O-Voxel resolutions TRELLIS.2 has shape flows for
SS_ONLY_RESOLUTIONS = (256, 512, 1024)  # data.latents=ss: any O-Voxel grid that pools to the 64^3 occupancy
# settings that change how a build runs or which assets it accepts, not what a sample holds (left out of the
# settings dataset.json compares across shards)
_NOT_COMPARED = ("data.group_size", "data.ovoxel.chunk_size", "data.asset.max_file_mb", "data.asset.max_faces",
                 "data.asset.max_extent", "data.asset.min_extent", "preprocess.max_pixels", "preprocess.min_foreground")


@dataclass(frozen=True)
class BuildSummary:
    total: int  # assets of this shard
    ok: int
    failed: int
    skipped: int  # already finished
    interrupted: bool
    stopped: str | None = None  # why the build stopped before its end (the disk is full); None otherwise

    @property
    def exit_code(self) -> int:
        return run_exit_code(failed=self.failed, interrupted=self.interrupted, stopped=self.stopped)


@dataclass(eq=False)
class _Job:
    """One asset on its way through the phases (the build's own bookkeeping)."""

    source: AssetSource
    seed: int  # the sample's seed (data.seed and id)
    timings: dict[str, float] = field(default_factory=dict)
    out: dict[str, Any] = field(default_factory=dict)  # what the phases produced so far

    @property
    def id(self) -> str:
        assert self.source.id is not None
        return self.source.id


def sample_seed(base_seed: int, sample_id: str) -> int:
    """The seed of one sample: depends on `data.seed` and the id only."""
    return stable_hash(f"{base_seed}:{sample_id}") % 2**31


def data_models(cfg: Know3dConfig) -> list[str]:
    """The models a build with `cfg` uses, in phase order."""
    names = (["ss_encoder"] if cfg.data.latents is DataLatents.ss else list(hub.ENCODER_MODELS)) + ["dinov3"]
    if cfg.data.text.source is TextSource.auto:
        names.append("mllm")
    return names + ["editor"]


def dataset_info(cfg: Know3dConfig, models: dict[str, hub.ResolvedModel], dtype: str) -> dict[str, Any]:
    """dataset.json: the keys every shard must agree on (`writer.COMPATIBILITY_KEYS`) and who built it."""
    full = to_container(cfg)
    for dotted in _NOT_COMPARED:
        *path, key = dotted.split(".")
        section = full
        for name in path:
            section = section[name]
        section.pop(key)
    settings = {"data": full["data"], "preprocess": full["preprocess"], "editor": full["editor"], "tap": full["tap"],
                "dtype": dtype}
    if "mllm" in models:
        settings["mllm"] = full["mllm"]
    return {
        "schema_version": SCHEMA_VERSION,
        "shape_resolution": cfg.data.ovoxel.resolution if cfg.data.latents is DataLatents.all else None,
        "ovoxel_resolution": cfg.data.ovoxel.resolution,
        "dino_resolutions": sorted(cfg.data.dino_resolutions),
        "variants": cfg.data.prompts.variants,
        "models": {name: {"repo": m.repo, "revision": m.revision} for name, m in models.items()},
        "settings": settings,
        "built_by": {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": metadata.package_versions(),
                     "model_paths": {name: str(m.path) for name, m in models.items()}},
    }


class DatasetBuilder:
    """Builds this shard's samples into a dataset folder; models load once, on first use.

    Args:
        cfg: the composed configuration (`data.*`, `editor`, `tap`, `mllm`, `preprocess`, `runtime`, `models`).
        out: the dataset folder.
        shard: the part of the assets this process builds.
        progress: stderr progress display.

    Raises:
        ConfigError: a setting a build cannot use, or a dataset at `out` built with other settings (exit 2).
        ModelMissingError: a model is not on disk (exit 3, with the command that fetches it).
    """

    def __init__(self, cfg: Know3dConfig, out: Path, shard: Shard, progress: Progress | None = None):
        if cfg.data.latents is DataLatents.all and cfg.data.ovoxel.resolution not in SHAPE_RESOLUTIONS:
            raise ConfigError(f"know3d data build needs data.ovoxel.resolution=512 or 1024 (the shape-latent "
                              f"resolutions of TRELLIS.2's flows), got {cfg.data.ovoxel.resolution}; "
                              "data.latents=ss (an SS-only dataset) also takes 256")
        self.cfg = cfg
        self.shard = shard
        self.progress = progress or Progress(enabled=False)
        self.runtime = resolve_runtime(cfg.runtime)
        self.residency = Residency(self.runtime.device, self.runtime.offload, PHASE_MODELS)
        self.models = {name: hub.resolve(cfg, name) for name in data_models(cfg)}
        dtype = str(self.runtime.dtype).removeprefix("torch.")
        self.writer = DatasetWriter(out, shard, dataset_info(cfg, self.models, dtype))
        self._loaded: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------ running
    def run(self, sources: list[AssetSource], emit: Callable[[dict[str, Any]], None],
            debug: bool = False) -> BuildSummary:
        """Build every asset of this shard that is not finished; emit one event per asset."""
        mine = [s for s in sources if self.shard.owns(s.key)]
        logger.info("shard %s: %d of %d assets", self.shard, len(mine), len(sources))
        counts: Counter[str] = Counter()
        self.progress.items(len(mine))

        def record(event: dict[str, Any]) -> None:
            counts[event["status"]] += 1
            emit(event)
            self.progress.advance()

        interrupted, stopped = False, None
        try:
            todo = []
            for source in mine:
                if source.error is not None:
                    record(self._failed(_Job(source, 0), source.error, "bad_input", None))
                elif self.writer.finished(source.id):
                    self.writer.adopt(source.id)
                    record(self._event(source, "skipped"))
                else:
                    todo.append(_Job(source, sample_seed(self.cfg.data.seed, source.id)))
            size = self.cfg.data.group_size
            for start in range(0, len(todo), size):
                for event in self._build_group(todo[start:start + size], debug):
                    record(event)
        except KeyboardInterrupt:
            interrupted = True
            logger.warning("interrupted: the samples in progress were not written; run the same command to resume")
        except WriteFailure as exc:  # the disk is full: no later sample can be written either
            stopped = str(exc)
            logger.error("build stopped: %s; finished samples are kept, run the same command to resume", stopped)
        return BuildSummary(len(mine), counts["ok"], counts["failed"], counts["skipped"], interrupted, stopped)

    def _build_group(self, jobs: list[_Job], debug: bool) -> Iterator[dict[str, Any]]:
        """Take `jobs` through every phase; yield each failure as it happens, then each written sample."""
        phases: list[tuple[str, str | None, Callable[[_Job], None]]] = [
            ("geometry", "encoders", self._geometry),
            ("dinov3", "dinov3", self._dino),
            ("text", "mllm" if self._describes(jobs) else None, self._text),
            ("editor", "editor", self._editor),
        ]
        self.residency.start_run()
        for name, model, step in phases:
            live = []
            if not jobs:
                return
            with self.progress.stage(name, f"{len(jobs)} assets"):
                loaded = self._model(model) if model is not None else None
                with self.residency.on_device(model, loaded) if loaded is not None else nullcontext():
                    for job in jobs:
                        failure = self._attempt(job, name, step, debug)
                        if failure is None:
                            live.append(job)
                        else:
                            yield failure
            jobs = live
        for job in jobs:
            failure = self._attempt(job, "write", self._write, debug)
            yield failure or self._event(job.source, "ok")

    def _attempt(self, job: _Job, phase: str, step: Callable[[_Job], None], debug: bool) -> dict[str, Any] | None:
        """Run one phase of one asset; its failure event, or None."""
        try:
            with self._out_of_memory_as_error(f"{phase} of {job.id}"):
                step(job)
        except KeyboardInterrupt:
            raise
        except WriteFailure as exc:
            if exc.disk_full:
                raise
            logger.error("%s: %s", job.id, exc)
            return self._failed(job, str(exc), exc.code, None)
        except Know3dError as exc:
            logger.error("%s: %s", job.id, exc)
            return self._failed(job, str(exc), exc.code, getattr(exc, "reason", None))
        except Exception as exc:  # one broken asset must not end the build
            if debug:
                traceback.print_exc()
            logger.error("%s: unexpected %s during %s: %s", job.id, type(exc).__name__, phase, exc)
            return self._failed(job, f"{type(exc).__name__} during {phase}: {exc}", "internal", None)
        return None

    # ------------------------------------------------------------------------------------------------ phases
    def _geometry(self, job: _Job) -> None:
        cfg = self.cfg.data
        with timed(job.timings, "asset"):
            asset = load_asset(job.source.path, cfg.asset)
            sha256 = file_sha256(job.source.path)
        with timed(job.timings, "ovoxel"):
            ovoxel = asset_to_ovoxel(asset, cfg.ovoxel)
            if cfg.quantize:
                ovoxel = ovoxel.quantized()
        with timed(job.timings, "encoders"):
            latents = encode_latents(ovoxel, self._model("encoders"), ss_only=cfg.latents is DataLatents.ss)
        with timed(job.timings, "render"):
            azimuth, elevation = draw_view_angles(np.random.default_rng([job.seed, 0]), cfg.views)
            pair = render_view_pair(asset, azimuth, elevation, cfg.views, self.cfg.preprocess)
        job.out.update(sha256=sha256, latents=latents, pair=pair, ovoxel={
            "resolution": ovoxel.resolution, "voxels": ovoxel.num_voxels, "quantized": cfg.quantize,
            "faces": asset.num_faces, "materials": len(asset.materials)})

    def _dino(self, job: _Job) -> None:
        with timed(job.timings, "dinov3"):
            job.out["dino"] = dino_tokens(self._model("dinov3"), job.out["pair"].front_image,
                                          sorted(self.cfg.data.dino_resolutions))

    def _describes(self, jobs: list[_Job]) -> bool:
        """Whether Qwen2.5-VL describes any of `jobs` (`data.text.source=auto` and an asset without a caption)."""
        return self.cfg.data.text.source is TextSource.auto and any(job.source.caption is None for job in jobs)

    def _text(self, job: _Job) -> None:
        pair = job.out["pair"]
        with timed(job.timings, "mllm"):
            if self._describes([job]):
                text = described_text(self._model("mllm"), pair.front_image, pair.back_image)
            else:
                text = caption_text(job.source.caption if self.cfg.data.text.source is not TextSource.none else None)
        prompts = self.cfg.data.prompts
        job.out["text"] = text
        job.out["variants"] = prompt_variants(text.parts, prompts.variants, prompts.p_empty,
                                              np.random.default_rng([job.seed, 1]))

    def _editor(self, job: _Job) -> None:
        variants = job.out["variants"]
        seeds = [stable_hash(f"{job.seed}:editor:{k}") % 2**31 for k in range(len(variants))]
        with timed(job.timings, "editor"):
            job.out["tapped"] = tapped_states(self._model("editor"), job.out["pair"].front_image, variants, seeds,
                                              self.cfg)
        job.out["editor_seeds"] = seeds

    def _write(self, job: _Job) -> None:
        out, pair = job.out, job.out["pair"]
        text, variants = out["text"], out["variants"]
        info = {
            "seed": job.seed,
            "camera": {"azimuth_deg": pair.azimuth, "elevation_deg": pair.elevation,
                       "back_azimuth_deg": (pair.azimuth + 180.0) % 360.0,
                       "occupancy_back_azimuth_deg": occupancy_azimuth(pair.azimuth + 180.0)},
            "caption": {"source": text.source, "parts": list(text.parts), **text.detail},
            "variants": [{"parts": list(v.parts), "editor_seed": s} for v, s in zip(variants, out["editor_seeds"])],
            "tap": out["tapped"].tap,
            "ovoxel": out["ovoxel"],
            "timings_s": {k: round(v, 4) for k, v in job.timings.items()},  # every phase but the write itself
        }
        self.writer.write(Sample(job.id, str(job.source.path), out["sha256"], out["latents"],
                                 {**out["dino"], "hdit": out["tapped"].hidden}, pair.front, pair.back,
                                 tuple(v.instruction for v in variants), info))

    # ------------------------------------------------------------------------------------------------ models
    @contextmanager
    def _out_of_memory_as_error(self, task: str) -> Iterator[None]:
        """CUDA out of memory in `task` -> `OutOfMemory` (the asset fails with what to try), the cache freed."""
        import torch

        try:
            yield
        except torch.OutOfMemoryError as exc:
            self.residency.free_cache()
            raise OutOfMemory(f"out of GPU memory during {task}; try runtime.offload=sequential or a smaller "
                              "data.group_size") from exc

    def _model(self, name: str):
        """A model, loaded on first use and kept for the whole build."""
        if name not in self._loaded:
            from .models import load_dinov3, load_encoders

            paths = {n: m.path for n, m in self.models.items()}
            with self.progress.stage(f"loading {name}"):
                if name == "encoders":
                    model = load_encoders(paths.get("trellis2_encoders"), paths["ss_encoder"], self.runtime)
                elif name == "dinov3":
                    model = load_dinov3(paths["dinov3"], self.runtime)
                elif name == "mllm":
                    from ..mllm import BackViewExpander

                    model = BackViewExpander(paths["mllm"], self.cfg.mllm, self.runtime)
                else:
                    from ..editor import load_editor

                    model = load_editor(paths["editor"], self.cfg.editor, self.runtime)
            self._loaded[name] = model
        return self._loaded[name]

    # ------------------------------------------------------------------------------------------------ events
    def _event(self, source: AssetSource, status: str, **extra: Any) -> dict[str, Any]:
        folder = self.writer.samples / source.id if status != "failed" and source.id else None
        return {"event": "asset", "id": source.id, "status": status, "dir": str(folder) if folder else None,
                "error": None, "source": str(source.path), "line": source.line, **extra}

    def _failed(self, job: _Job, error: str, code: str, reason: str | None) -> dict[str, Any]:
        line = " ".join(error.split())
        self.writer.fail({"id": job.source.id, "source": str(job.source.path), "line": job.source.line,
                          "error": line, "code": code, "reason": reason,
                          "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return {**self._event(job.source, "failed"), "error": line, "code": code, "reason": reason}


def run_build(assets: str, out: Path, cfg: Know3dConfig, shard: Shard, *, emit: Callable[[dict[str, Any]], None],
              progress: Progress | None = None, debug: bool = False) -> BuildSummary:
    """`know3d data build ASSETS --out OUT [--shard i/n]`: build, emit one line per asset, then the summary."""
    from .sources import read_sources

    sources = read_sources(assets, cfg.data.text.separator)
    builder = DatasetBuilder(cfg, out, shard, progress)
    summary = builder.run(sources, emit, debug=debug)
    emit({"event": "summary", "total": summary.total, "ok": summary.ok, "failed": summary.failed,
          "skipped": summary.skipped, "interrupted": summary.interrupted, "stopped": summary.stopped,
          "shard": str(shard), "dataset": str(builder.writer.root), "index": str(builder.writer.index_path),
          "failures": str(builder.writer.failures_path)})
    return summary


__all__ = ["BuildSummary", "DatasetBuilder", "data_models", "dataset_info", "run_build", "sample_seed"]
