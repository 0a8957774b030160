"""`know3d batch`: every row of a CSV manifest (or of its `--shard`) through loaded pipelines, resumable, item by item.

Several batches may share one `--out` (other shards or manifests, other machines on a shared filesystem): each item
is generated under its `AssetLock`, so an item another process is generating is left for later, then waited for and
found finished. Every item's line goes to `<out>/results.jsonl` while its lock is held (see `outputs.py`).

`run_batch` owns what every engine shares (the manifest, the journal, counting, printing, the summary); an engine
runs the rows: `run_local` here, one after another, or `ray_engine.run_on_ray` on Ray actors (`engine=ray`).
"""

from __future__ import annotations

import logging
import secrets
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import metadata
from .config import EngineName, Know3dConfig
from .errors import Know3dError, WriteFailure, run_exit_code
from .io import ensure_writable_dir
from .manifest import ManifestRow, read_manifest
from .outputs import RESULTS_FILE, AssetLock, ResultsLog, clean_stale
from .pipeline import AssetJob, Know3dPipeline
from .preprocess import file_sha256
from .progress import Progress
from .shard import ALL, Shard

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchSummary:
    total: int
    ok: int
    failed: int
    skipped: int
    interrupted: bool
    stopped: str | None = None  # why the batch stopped before its end (e.g. the disk is full); None otherwise
    shard: str = "0/1"  # the manifest's part this batch ran (--shard i/n)

    @property
    def exit_code(self) -> int:
        return run_exit_code(failed=self.failed, interrupted=self.interrupted, stopped=self.stopped)

    def event(self, results: Path) -> dict[str, Any]:
        return {"event": "summary", "total": self.total, "ok": self.ok, "failed": self.failed,
                "skipped": self.skipped, "interrupted": self.interrupted, "stopped": self.stopped,
                "shard": self.shard, "results": str(results)}


@dataclass(frozen=True)
class Outcome:
    event: dict[str, Any]  # the item's line on stdout and in results.jsonl
    stop: str | None = None  # set when no later item can succeed either (the output disk is full)


@dataclass(frozen=True)
class BatchContext:
    """What an engine needs to run a batch's rows. Every item's outcome goes through `finish`, in this process."""

    pipeline: Know3dPipeline  # checked here (models, settings); the local engine's items run through it
    cfg: Know3dConfig
    out: Path  # the output folder (results.jsonl already open)
    resume: bool  # skip items whose complete output exists for the same inputs and config
    debug: bool  # tracebacks of unexpected errors on stderr
    finish: Callable[[Outcome], bool]  # count, print and journal an item's outcome; True when the batch must stop


# An engine runs rows and reports each through `ctx.finish`, holding the item's `AssetLock` until it returns; it
# stops when `finish` says so. On Ctrl-C it reports nothing more and lets the KeyboardInterrupt through.
Engine = Callable[[list[ManifestRow], BatchContext], None]


def run_batch(manifest: Path, out: Path, cfg: Know3dConfig, *, shard: Shard = ALL, resume: bool = True,
              fail_fast: bool = False, emit: Callable[[dict[str, Any]], None], progress: Progress | None = None,
              debug: bool = False) -> BatchSummary:
    """Run every manifest row of `shard`; each item succeeds or fails on its own. Ctrl-C or a full disk ends the
    batch after a clean summary; finished items are kept and a re-run resumes."""
    rows = [row for row in read_manifest(manifest) if shard.owns(shard_key(row))]
    engine = _engine(cfg)
    ensure_writable_dir(out)
    progress = progress or Progress(enabled=False)
    results_path = out / RESULTS_FILE
    run_id = secrets.token_hex(6)
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    interrupted, stopped = False, None

    pipeline = Know3dPipeline(cfg, progress=progress, keep_models=True)  # checks models and settings, loads none
    with ResultsLog(results_path) as results:  # created now, so even a header-only manifest leaves one

        def finish(outcome: Outcome) -> bool:
            """Count, print and append an item's line; True when the batch must stop."""
            nonlocal stopped
            event = outcome.event
            counts[event["status"]] += 1
            emit(event)
            progress.advance()
            try:
                results.append({**event, "run": run_id})
            except WriteFailure as exc:
                stopped = str(exc)
                return True
            if outcome.stop is not None:
                stopped = outcome.stop
                return True
            if fail_fast and event["status"] == "failed":
                logger.warning("--fail-fast: stopping after the first failure")
                return True
            return False

        try:
            clean_stale(out)
            progress.items(len(rows))
            engine(rows, BatchContext(pipeline, cfg, out, resume, debug, finish))
        except KeyboardInterrupt:
            interrupted = True
    if stopped:
        logger.error("batch stopped: %s; finished assets are kept, run the batch again to resume", stopped)
    summary = BatchSummary(len(rows), counts["ok"], counts["failed"], counts["skipped"], interrupted, stopped,
                           str(shard))
    emit({**summary.event(results_path), "report": _write_gallery(out)})
    return summary


def shard_key(row: ManifestRow) -> str:
    """What `--shard` splits by: the id (adding rows never moves an existing one), else the image of a bad row."""
    return row.id if row.id is not None else str(row.image)


def _write_gallery(out: Path) -> str | None:
    """`out`'s review gallery (index.html); failing to write it is a warning, never the batch's failure."""
    from .report import write_report

    try:
        return str(write_report(out).path)
    except Know3dError as exc:
        logger.warning("no review gallery: %s", exc)
        return None


def _engine(cfg: Know3dConfig) -> Engine:
    if cfg.engine.name is EngineName.ray:
        from .ray_engine import ray_engine

        return ray_engine()  # a usage error now, before any work, when Ray is not installed
    return run_local


def run_local(rows: list[ManifestRow], ctx: BatchContext) -> None:
    """The local engine: one item after another in this process; ids another process holds come last."""
    deferred: list[ManifestRow] = []
    current: ManifestRow | None = None
    try:
        for row in rows:
            if row.error:
                if ctx.finish(failed(row, row.error, "bad_input")):
                    return
                continue
            lock = AssetLock(ctx.out, row.id)
            if not lock.acquire(blocking=False):
                logger.info("%s is being generated by another process (%s); coming back to it at the end",
                            row.id, lock.holder() or "unknown")
                deferred.append(row)
                continue
            try:
                current = row
                outcome = _run_row(row, ctx, ctx.resume)
                current = None
                if ctx.finish(outcome):
                    return
            finally:
                lock.release()
        for row in deferred:
            with AssetLock(ctx.out, row.id):  # another process had it: wait, then it is usually finished
                current = row
                outcome = _run_row(row, ctx, True)
                current = None
                if ctx.finish(outcome):
                    return
    except KeyboardInterrupt:
        if current is not None:
            logger.warning("interrupted: %s was not finished (nothing of it was written)", current.id or current.image)
        raise


def failed(row: ManifestRow, error: str, code: str) -> Outcome:
    return Outcome({"event": "asset", "id": row.id, "line": row.line, "image": str(row.image), "status": "failed",
                    "dir": None, "error": error, "code": code})


def job_of(row: ManifestRow, cfg: Know3dConfig) -> AssetJob:
    """A good row as a job: its own back text and seed, else the config's."""
    return AssetJob(image=row.image, id=row.id, back=row.back if row.back is not None else cfg.back,
                    seed=row.seed if row.seed is not None else cfg.seed)


def _run_row(row: ManifestRow, ctx: BatchContext, resume: bool) -> Outcome:
    """One item, under its lock."""
    job = job_of(row, ctx.cfg)
    skipped = skipped_if_finished(row, job, ctx.pipeline, ctx.out) if resume else None
    return skipped or generate_row(row, job, ctx.pipeline, ctx.out, ctx.debug)


def skipped_if_finished(row: ManifestRow, job: AssetJob, pipeline: Know3dPipeline, out: Path) -> Outcome | None:
    """The item's `skipped` outcome when its complete output exists for the same inputs and config, else None."""
    if not _finished(job, pipeline, out):
        return None
    logger.info("%s: already finished with the same inputs and config, skipped", job.id)
    return Outcome({"event": "asset", "id": row.id, "line": row.line, "image": str(row.image), "status": "skipped",
                    "dir": str(out / job.id), "error": None})


def generate_row(row: ManifestRow, job: AssetJob, pipeline: Know3dPipeline, out: Path, debug: bool) -> Outcome:
    """Generate one item whose lock the caller holds; every error becomes the item's `failed` outcome."""
    try:
        result = pipeline.run(job, out, locked=True)
    except WriteFailure as exc:
        logger.error("%s: %s", job.id, exc)
        return Outcome(failed(row, str(exc), exc.code).event, stop="the output disk is full" if exc.disk_full else None)
    except Know3dError as exc:
        logger.error("%s: %s", job.id, exc)
        return failed(row, str(exc), exc.code)
    except Exception as exc:  # one broken item must not end the batch
        if debug:
            traceback.print_exc()
        logger.error("%s: unexpected %s: %s", job.id, type(exc).__name__, exc)
        return failed(row, f"{type(exc).__name__}: {exc}", "internal")
    return Outcome({**result.event(), "line": row.line, "image": str(row.image)})


def _finished(job: AssetJob, pipeline: Know3dPipeline, out: Path) -> bool:
    """A complete output for the same inputs and config exists (the folder only ever appears complete)."""
    meta = metadata.read(out / job.id / metadata.METADATA_FILE)
    if meta is None:
        return False
    try:
        if not job.image.is_file():
            return False
        sha256 = file_sha256(job.image)
    except (OSError, Know3dError):  # the run itself reports what is wrong with the image
        return False
    if meta.get("key") != pipeline.expected_key(job, sha256):
        return False
    return all((out / job.id / name).is_file() for name in meta.get("files", []))
