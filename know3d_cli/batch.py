"""Running a list of rows (a `batch` manifest or its `--shard`, or `generate`'s images) through loaded pipelines,
item by item.

Every row is checked first, before any model loads: its own cells, the configuration its `mode` / `preview` /
`overrides` cells make (`RowConfigs`), the models that configuration needs, its output folder and, for `generate`,
what already is there. Then an engine runs the rows: `run_local` here, one after another, or `ray_engine.run_on_ray`
on Ray actors (`engine=ray`). Rows with the same settings share one pipeline (`PipelineCache`: models loaded once);
moving on to other settings frees the previous pipeline's models.

Several processes may share one `--out` (other shards or manifests, other machines on a shared filesystem): each
item is generated under its `AssetLock`, so an item another process is generating is left for later, then waited
for and found finished. What to do with a finished asset is the `ExistingAsset` policy, decided under the lock, so
two invocations whose inputs map to one id never both write it. A batch (`RunOptions.journal`) appends every item's
line to `<out>/results.jsonl` while its lock is held (see `outputs.py`), prints a summary and writes the gallery.

`run_rows` owns what every engine shares (the checks, the journal, counting, printing, the summary).
"""

from __future__ import annotations

import json
import logging
import secrets
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TypeVar

from .asset_run import input_png
from .config import EngineName, Know3dConfig, load_config, override_key, to_container
from .errors import ConfigError, InputError, Know3dError, OutputError, WriteFailure, run_exit_code
from .io import ensure_writable_dir
from .manifest import ManifestRow, RowDefaults, read_manifest
from .outputs import RESULTS_FILE, AssetLock, ExistingAsset, ResultsLog, clean_stale, finished_asset, write_asset
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
    checked: int = 0  # rows a dry run checked and preprocessed
    error: Know3dError | None = field(default=None, compare=False)  # the first item failure (`generate` exits with it)

    @property
    def exit_code(self) -> int:
        return run_exit_code(failed=self.failed, interrupted=self.interrupted, stopped=self.stopped)

    def event(self, results: Path) -> dict[str, Any]:
        return {"event": "summary", "total": self.total, "ok": self.ok, "failed": self.failed,
                "skipped": self.skipped, "checked": self.checked, "interrupted": self.interrupted,
                "stopped": self.stopped, "shard": self.shard, "results": str(results)}


@dataclass(frozen=True)
class RunOptions:
    """How a list of rows runs (`batch` and `generate` differ only here)."""

    existing: ExistingAsset = ExistingAsset.skip  # what to do with a finished asset
    fail_fast: bool = False  # stop after the first failed row (a failed check stops before any work)
    dry_run: bool = False  # check every row and write only each asset's `input.png` (always on the local engine)
    journal: bool = True  # batch: results.jsonl, the summary line and the review gallery
    log_failures: bool = True  # log each failure on stderr (`generate` reports its one failure as its error line)
    debug: bool = False  # tracebacks of unexpected errors on stderr


@dataclass(frozen=True)
class Outcome:
    event: dict[str, Any]  # the item's line on stdout and in results.jsonl
    stop: str | None = None  # set when no later item can succeed either (the output disk is full)
    error: Know3dError | None = None  # why the item failed


T = TypeVar("T")


def _remembered(cache: dict[Any, T | Know3dError], key: Any, make: Callable[[], T]) -> T:
    """`make()` once per key; a `Know3dError` it raised is remembered and raised again (one check per setting)."""
    if key not in cache:
        try:
            cache[key] = make()
        except Know3dError as exc:
            cache[key] = exc
    found = cache[key]
    if isinstance(found, Know3dError):
        raise found
    return found


class RowConfigs:
    """Each row's configuration: the command's overrides, then the row's `mode`, `preview` and `overrides` cells
    (composed once per distinct set of cells). The engine is the command's: a row cannot set `engine`."""

    def __init__(self, overrides: list[str], base: Know3dConfig):
        self.overrides = list(overrides)
        self.base = base  # `overrides` composed
        self._cache: dict[tuple[str, ...], Know3dConfig | Know3dError] = {(): base}

    def of(self, row: ManifestRow) -> Know3dConfig:
        """Raises the row's configuration problem (`ConfigError`, exit 2)."""
        key = tuple(row.config_overrides())
        return _remembered(self._cache, key, lambda: self._compose(key))

    def _compose(self, row_overrides: tuple[str, ...]) -> Know3dConfig:
        for override in row_overrides:
            if override_key(override).split(".", 1)[0] == "engine":
                raise ConfigError(f"the row's override {override!r} sets the engine, which is the command's setting "
                                  "(pass it on the command line)")
        return load_config(self.overrides + list(row_overrides))


class PipelineCache:
    """One checked pipeline per distinct configuration, built on first request with no model loaded; only the
    pipeline in use keeps its models loaded. The local engine's and every Ray actor's."""

    def __init__(self, progress: Progress | None = None):
        self.progress = progress or Progress(enabled=False)
        self._cache: dict[str, Know3dPipeline | Know3dError] = {}
        self._active: Know3dPipeline | None = None

    def get(self, cfg: Know3dConfig) -> Know3dPipeline:
        """The pipeline of `cfg`. Raises its model or settings problem (cached per configuration)."""
        key = json.dumps(to_container(cfg), sort_keys=True)
        return _remembered(self._cache, key, lambda: Know3dPipeline(cfg, progress=self.progress, keep_models=True))

    def activate(self, pipeline: Know3dPipeline) -> Know3dPipeline:
        """`pipeline` is about to run: the previously active one's models are freed."""
        if self._active is not None and self._active is not pipeline:
            self._active.models.release_all()
        self._active = pipeline
        return pipeline


@dataclass(frozen=True)
class BatchContext:
    """What an engine needs to run rows. Every item's outcome goes through `finish`, in this process."""

    configs: RowConfigs  # each row's configuration; `configs.base` is the command's (engine settings)
    pipelines: PipelineCache  # checked pipelines (the local engine's items run through them)
    out: Path  # the output folder (results.jsonl already open for a batch)
    options: RunOptions
    checks: dict[int, Outcome]  # the failed outcome of each row (by `line`) that cannot run, found before any work
    finish: Callable[[Outcome], bool]  # count, print and journal an item's outcome; True when the run must stop

    def pipeline(self, row: ManifestRow) -> Know3dPipeline:
        return self.pipelines.get(self.configs.of(row))

    def job(self, row: ManifestRow) -> AssetJob:
        """A good row as a job: its own back text and seed, else its configuration's."""
        cfg = self.configs.of(row)
        return AssetJob(image=row.image, id=row.id, back=row.back if row.back is not None else cfg.back,
                        seed=row.seed if row.seed is not None else cfg.seed)

    def settle(self, row: ManifestRow, job: AssetJob, *, deferred: bool = False) -> Outcome | None:
        """Under the row's lock: its outcome when it needs no generation (a finished asset kept by the policy, or
        refused), else None. A deferred row was another process's: with `--overwrite`, what that process finished
        during this run is kept."""
        existing = self.options.existing
        if deferred and existing is ExistingAsset.overwrite:
            existing = ExistingAsset.skip
        meta = finished_asset(self.out, job.id)
        if meta is None or existing is ExistingAsset.overwrite:
            return None
        if existing is ExistingAsset.refuse:  # finished meanwhile, by a parallel invocation
            return failure(row, refused(self.out, job.id), self.options)
        return skipped(row, job, self.pipeline(row), self.out, meta)


# An engine runs rows and reports each through `ctx.finish`, holding the item's `AssetLock` until it returns; it
# stops when `finish` says so. On Ctrl-C it reports nothing more and lets the KeyboardInterrupt through.
Engine = Callable[[list[ManifestRow], BatchContext], None]


def run_batch(manifest: Path | str, out: Path, overrides: list[str], *, base: Know3dConfig | None = None,
              shard: Shard = ALL, defaults: RowDefaults = RowDefaults(), options: RunOptions = RunOptions(),
              emit: Callable[[dict[str, Any]], None], progress: Progress | None = None) -> BatchSummary:
    """Every row of a manifest (`-`: stdin) that `shard` owns; see `run_rows`."""
    rows = [row for row in read_manifest(manifest, defaults) if shard.owns(shard_key(row))]
    return run_rows(rows, out, overrides, base=base, shard=shard, options=options, emit=emit, progress=progress)


def run_rows(rows: list[ManifestRow], out: Path, overrides: list[str], *, base: Know3dConfig | None = None,
             shard: Shard = ALL, options: RunOptions = RunOptions(), emit: Callable[[dict[str, Any]], None],
             progress: Progress | None = None) -> BatchSummary:
    """Check every row, then run the good ones; each item succeeds or fails on its own. Ctrl-C or a full disk ends
    the run after a clean summary; finished items are kept and a re-run resumes.

    Args:
        overrides: the command's config overrides; `base` is them composed (composed here when None).

    Raises:
        Know3dError: the command's own configuration or its models are unusable, the engine is unavailable, or
            `out` cannot be written: nothing can run.
    """
    progress = progress or Progress(enabled=False)
    configs = RowConfigs(overrides, base or load_config(overrides))
    pipelines = PipelineCache(progress)
    pipelines.get(configs.base)  # checks the command's models and settings, loads none
    engine = _engine(configs.base, options)
    ensure_writable_dir(out)
    results_path = out / RESULTS_FILE
    run_id = secrets.token_hex(6)
    counts = {"ok": 0, "failed": 0, "skipped": 0, "checked": 0}
    stopped: str | None = None  # why the run stopped early
    first_error: Know3dError | None = None
    interrupted = False

    # a batch's journal is created now, so even a header-only manifest leaves one
    with ResultsLog(results_path) if options.journal else nullcontext() as results:

        def finish(outcome: Outcome) -> bool:
            """Count, print and append an item's line; True when the run must stop."""
            nonlocal stopped, first_error
            event = outcome.event
            counts[event["status"]] += 1
            if first_error is None:
                first_error = outcome.error
            emit(event)
            progress.advance()
            if results is not None:
                try:
                    results.append({**event, "run": run_id})
                except WriteFailure as exc:
                    stopped = str(exc)
                    return True
            if outcome.stop is not None:
                stopped = outcome.stop
                return True
            if options.fail_fast and event["status"] == "failed":
                if len(rows) > 1 and options.log_failures:
                    logger.warning("--fail-fast: stopping after the first failure")
                return True
            return False

        try:
            if options.journal:
                clean_stale(out)
            progress.items(len(rows))
            ctx = BatchContext(configs, pipelines, out, options, {}, finish)
            ctx = replace(ctx, checks=_check_rows(rows, ctx))
            if options.fail_fast and ctx.checks:
                finish(next(iter(ctx.checks.values())))  # the first problem; nothing runs
            else:
                engine(rows, ctx)
        except KeyboardInterrupt:
            interrupted = True
    if stopped and options.journal:
        logger.error("batch stopped: %s; finished assets are kept, run the batch again to resume", stopped)
    summary = BatchSummary(len(rows), counts["ok"], counts["failed"], counts["skipped"], interrupted,
                           stopped, str(shard), counts["checked"], first_error)
    if options.journal:
        emit({**summary.event(results_path), "report": None if options.dry_run else _write_gallery(out)})
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


def _engine(cfg: Know3dConfig, options: RunOptions) -> Engine:
    if cfg.engine.name is EngineName.ray and not options.dry_run:  # a dry run only preprocesses: here
        from .ray_engine import ray_engine

        return ray_engine()  # a usage error now, before any work, when Ray is not installed
    return run_local


def _check_rows(rows: list[ManifestRow], ctx: BatchContext) -> dict[int, Outcome]:
    """The failed outcome of every row that cannot run, by line, in row order; no model loads."""
    checks = {}
    for row in rows:
        outcome = _check_row(row, ctx)
        if outcome is not None:
            checks[row.line] = outcome
    return checks


def _check_row(row: ManifestRow, ctx: BatchContext) -> Outcome | None:
    if row.error:
        return failed(row, InputError(row.error))
    try:
        job = ctx.job(row)
        ctx.pipeline(row).check_job(job, ctx.out)
        if ctx.options.existing is ExistingAsset.refuse and finished_asset(ctx.out, job.id) is not None:
            raise refused(ctx.out, job.id)
    except Know3dError as exc:
        return failed(row, exc)
    return None


def run_local(rows: list[ManifestRow], ctx: BatchContext) -> None:
    """The local engine: one item after another in this process; ids another process holds come last."""
    deferred: list[ManifestRow] = []
    current: ManifestRow | None = None
    try:
        for row in rows:
            check = ctx.checks.get(row.line)
            if check is not None:
                if ctx.finish(check):
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
                outcome = _run_row(row, ctx)
                current = None
                if ctx.finish(outcome):
                    return
            finally:
                lock.release()
        for row in deferred:
            with AssetLock(ctx.out, row.id):  # another process had it: wait, then it is usually finished
                current = row
                outcome = _run_row(row, ctx, deferred=True)
                current = None
                if ctx.finish(outcome):
                    return
    except KeyboardInterrupt:
        if current is not None and ctx.options.log_failures:
            logger.warning("interrupted: %s was not finished (nothing of it was written)", current.id or current.image)
        raise


def _run_row(row: ManifestRow, ctx: BatchContext, deferred: bool = False) -> Outcome:
    """One checked item, under its lock."""
    job = ctx.job(row)
    settled = ctx.settle(row, job, deferred=deferred)
    if settled is not None:
        return settled
    pipeline = ctx.pipelines.activate(ctx.pipeline(row))
    if ctx.options.dry_run:
        return _dry_run(row, job, pipeline, ctx.out, ctx.options)
    return generate_row(row, job, pipeline, ctx.out, ctx.options)


def failed(row: ManifestRow, error: Know3dError, code: str | None = None) -> Outcome:
    return Outcome({"event": "asset", "id": row.id, "line": row.line, "image": str(row.image), "status": "failed",
                    "dir": None, "error": str(error), "code": code or error.code}, error=error)


def failure(row: ManifestRow, error: Know3dError, options: RunOptions, *, stop: str | None = None,
            code: str | None = None) -> Outcome:
    """An item's failure while it runs, logged unless `generate` reports it as its error line."""
    if options.log_failures:
        logger.error("%s: %s", row.id, error)
    return replace(failed(row, error, code), stop=stop)


def refused(out: Path, asset_id: str) -> OutputError:
    return OutputError(f"{out / asset_id} holds a finished asset; pass --overwrite to replace it or --skip-existing "
                       "to keep it (or choose another --id / --id-template / --out)")


def skipped(row: ManifestRow, job: AssetJob, pipeline: Know3dPipeline, out: Path, meta: dict[str, Any]) -> Outcome:
    """The item's `skipped` outcome: its finished asset is kept (`meta`: its metadata)."""
    up_to_date = _same_run(job, pipeline, meta)
    if up_to_date:
        logger.info("%s: already finished with the same inputs and config, skipped", job.id)
    else:
        logger.warning("%s: a finished asset made from other inputs or settings is kept (--skip-existing); "
                       "--overwrite regenerates it", job.id)
    mode = meta.get("mode")
    return Outcome({"event": "asset", "id": row.id, "line": row.line, "image": str(row.image), "status": "skipped",
                    "dir": str(out / job.id), "error": None,
                    "mode": mode.get("used") if isinstance(mode, dict) else None, "seed": meta.get("seed"),
                    "files": meta.get("files", []), "up_to_date": up_to_date})


def generate_row(row: ManifestRow, job: AssetJob, pipeline: Know3dPipeline, out: Path, options: RunOptions) -> Outcome:
    """Generate one item whose lock the caller holds; every error becomes the item's `failed` outcome."""

    def generate() -> Outcome:
        return Outcome({**pipeline.run(job, out, locked=True).event(), "line": row.line, "image": str(row.image)})

    return _guarded(row, options, generate)


def _guarded(row: ManifestRow, options: RunOptions, work: Callable[[], Outcome]) -> Outcome:
    """`work()`, with every error as the item's `failed` outcome (a full disk also stops the run)."""
    try:
        return work()
    except WriteFailure as exc:
        return failure(row, exc, options, stop="the output disk is full" if exc.disk_full else None)
    except Know3dError as exc:
        return failure(row, exc, options)
    except Exception as exc:  # one broken item must not end the batch
        if options.debug:
            traceback.print_exc()
        return failure(row, Know3dError(f"unexpected {type(exc).__name__}: {exc}"), options, code="internal")


def _same_run(job: AssetJob, pipeline: Know3dPipeline, meta: dict[str, Any]) -> bool:
    """The finished asset was made from the same image bytes, text, seed and settings."""
    try:
        if not job.image.is_file():
            return False
        sha256 = file_sha256(job.image)
    except (OSError, Know3dError):  # the run itself reports what is wrong with the image
        return False
    return meta.get("key") == pipeline.expected_key(job, sha256)


def _dry_run(row: ManifestRow, job: AssetJob, pipeline: Know3dPipeline, out: Path, options: RunOptions) -> Outcome:
    """Preprocess only and write `<out>/<id>/input.png`. A finished asset is never touched (`settle` kept it, or
    `--overwrite` asked for a replacement, which a dry run does not make)."""

    def check() -> Outcome:
        prepared = pipeline.prepare(job.image)
        files: list[str] = []
        if finished_asset(out, job.id) is None:
            write_asset(out, job.id, {"input.png": input_png(prepared)})
            files = ["input.png"]
        else:
            logger.info("%s: dry run: the finished asset is kept as it is; its input.png was not rewritten", job.id)
        return Outcome({"event": "asset", "id": row.id, "line": row.line, "image": str(row.image),
                        "status": "checked", "dir": str(out / job.id), "error": None,
                        "mode": str(pipeline.context.plan.mode), "seed": job.seed, "files": files,
                        "mask": prepared.mask_source, "warnings": list(prepared.warnings)})

    return _guarded(row, options, check)


__all__ = ["RESULTS_FILE", "BatchContext", "BatchSummary", "Engine", "Outcome", "PipelineCache", "RowConfigs",
           "RunOptions", "failed", "failure", "generate_row", "run_batch", "run_local", "run_rows",
           "shard_key"]
