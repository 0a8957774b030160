"""Running a list of rows (a `batch` manifest, or `generate`'s images) through loaded pipelines, item by item.

Every row is checked first, before any model loads: its own cells, the configuration its `mode` / `preview` /
`overrides` cells make, the models that configuration needs, its output folder and what already is there. Then the
rows run in order; rows with the same settings share one pipeline (models loaded once), and moving on to other
settings frees the previous pipeline's models.

Several processes may share one `--out` (other manifests, other machines on a shared filesystem): each item is
generated under its `AssetLock`, so an item another process is generating is left for later, then waited for and
found finished. What to do with a finished asset is the `ExistingAsset` policy, decided under the lock, so two
invocations whose inputs map to one id never both write it. With `journal`, every item's line goes to
`<out>/results.jsonl` while its lock is held (see `outputs.py`).
"""

from __future__ import annotations

import io
import logging
import secrets
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .config import Know3dConfig, load_config
from .errors import (
    EXIT_BATCH_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUNTIME,
    InputError,
    Know3dError,
    OutputError,
    WriteFailure,
)
from .io import ensure_writable_dir
from .manifest import ManifestRow, RowDefaults, read_manifest
from .outputs import AssetLock, ExistingAsset, ResultsLog, clean_stale, finished_asset, write_asset
from .pipeline import AssetJob, Know3dPipeline
from .preprocess import file_sha256
from .progress import Progress

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"


@dataclass(frozen=True)
class BatchSummary:
    total: int
    ok: int
    failed: int
    skipped: int
    interrupted: bool
    stopped: str | None = None  # why the batch stopped before its end (e.g. the disk is full); None otherwise
    checked: int = 0  # rows a dry run checked and preprocessed
    error: Know3dError | None = None  # the first item failure (`generate` exits with it)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.stopped is not None:
            return EXIT_RUNTIME
        return EXIT_BATCH_FAILURES if self.failed else EXIT_OK

    def event(self, results: Path | None) -> dict[str, Any]:
        event = {"event": "summary", "total": self.total, "ok": self.ok, "failed": self.failed,
                 "skipped": self.skipped, "interrupted": self.interrupted, "stopped": self.stopped,
                 "results": str(results) if results is not None else None}
        if self.checked:
            event["checked"] = self.checked
        return event


@dataclass(frozen=True)
class RunOptions:
    existing: ExistingAsset = ExistingAsset.skip  # what to do with a finished asset
    fail_fast: bool = False  # stop after the first failed row (a failed check stops before any work)
    dry_run: bool = False  # check every row and write only each asset's `input.png`
    journal: bool = True  # append every item's line to <out>/results.jsonl
    log_failures: bool = True  # log each failure on stderr (`generate` reports its one failure itself)
    debug: bool = False


@dataclass(frozen=True)
class _Outcome:
    event: dict[str, Any]  # the item's line on stdout and in results.jsonl
    stop: str | None = None  # set when no later item can succeed either (the output disk is full)
    error: Know3dError | None = None


def run_batch(manifest: Path | str, out: Path, overrides: list[str], *, base: Know3dConfig | None = None,
              defaults: RowDefaults = RowDefaults(), options: RunOptions = RunOptions(),
              emit: Callable[[dict[str, Any]], None], progress: Progress | None = None) -> BatchSummary:
    """Every row of a manifest (`-`: stdin); see `run_rows` (`base`: `overrides` already composed)."""
    return run_rows(read_manifest(manifest, defaults), out, overrides, base=base, options=options, emit=emit,
                    progress=progress)


def run_rows(rows: list[ManifestRow], out: Path, overrides: list[str], *, base: Know3dConfig | None = None,
             options: RunOptions = RunOptions(), emit: Callable[[dict[str, Any]], None],
             progress: Progress | None = None) -> BatchSummary:
    """Check every row, then run the good ones; each item succeeds or fails on its own. Ctrl-C or a full disk ends
    the run after a clean summary; finished items are kept and a re-run resumes.

    Raises:
        Know3dError: the command's own configuration (`overrides`) or its models are unusable, or `out` cannot be
            written: nothing can run.
    """
    progress = progress or Progress(enabled=False)
    pipelines = _Pipelines(overrides, base or load_config(overrides), progress)  # checks models, loads none
    ensure_writable_dir(out)
    results_path = out / RESULTS_FILE if options.journal else None
    run_id = secrets.token_hex(6)
    counts = {"ok": 0, "failed": 0, "skipped": 0, "checked": 0}
    state: dict[str, Any] = {"stopped": None, "error": None}
    interrupted = False
    current: ManifestRow | None = None

    with ResultsLog(results_path) if results_path is not None else nullcontext() as results:

        def finish(outcome: _Outcome) -> bool:
            """Count, print and append an item's line; True when the run must stop."""
            event = outcome.event
            counts[event["status"]] += 1
            if outcome.error is not None and state["error"] is None:
                state["error"] = outcome.error
            emit(event)
            progress.advance()
            if results is not None:
                try:
                    results.append({**event, "run": run_id})
                except WriteFailure as exc:
                    state["stopped"] = str(exc)
                    return True
            if outcome.stop is not None:
                state["stopped"] = outcome.stop
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
            checked = [(row, _check_row(row, pipelines, out, options)) for row in rows]
            stop = False
            if options.fail_fast and any(failure is not None for _, failure in checked):
                # nothing runs when a row cannot: report the first problem only
                row, failure = next((r, f) for r, f in checked if f is not None)
                stop = finish(failure)
                checked = []
            deferred: list[ManifestRow] = []
            for row, failure in checked:
                if failure is not None:
                    stop = finish(failure)
                else:
                    lock = AssetLock(out, row.id)
                    if not lock.acquire(blocking=False):
                        logger.info("%s is being generated by another process (%s); coming back to it at the end",
                                    row.id, lock.holder() or "unknown")
                        deferred.append(row)
                        continue
                    try:
                        current = row
                        outcome = _run_row(row, pipelines, out, options)
                        current = None
                        stop = finish(outcome)
                    finally:
                        lock.release()
                if stop:
                    break
            for row in [] if stop else deferred:
                with AssetLock(out, row.id):  # another process had it: wait, then it is usually finished
                    current = row
                    outcome = _run_row(row, pipelines, out, options)
                    current = None
                    if finish(outcome):
                        break
        except KeyboardInterrupt:
            interrupted = True
            if current is not None and options.log_failures:
                logger.warning("interrupted: %s was not finished (nothing of it was written)",
                               current.id or current.image)
    if state["stopped"] and options.journal:
        logger.error("batch stopped: %s; finished assets are kept, run the batch again to resume", state["stopped"])
    summary = BatchSummary(len(rows), counts["ok"], counts["failed"], counts["skipped"], interrupted,
                           state["stopped"], counts["checked"], state["error"])
    if options.journal:
        emit(summary.event(results_path))
    return summary


class _Pipelines:
    """One pipeline per distinct row configuration, built (checked, no model loaded) on first request; only the
    pipeline in use keeps models loaded."""

    def __init__(self, overrides: list[str], base: Know3dConfig, progress: Progress):
        self.overrides = list(overrides)
        self.progress = progress
        self._cache: dict[tuple[str, ...], Know3dPipeline | Know3dError] = {}
        self._active: Know3dPipeline | None = None
        self._cache[()] = Know3dPipeline(base, progress=progress, keep_models=True)  # raises: the command fails

    def get(self, row: ManifestRow) -> Know3dPipeline:
        """The row's pipeline. Raises the row's configuration or model problem (cached per configuration)."""
        key = tuple(row.config_overrides())
        if key not in self._cache:
            try:
                cfg = load_config(self.overrides + list(key))
                self._cache[key] = Know3dPipeline(cfg, progress=self.progress, keep_models=True)
            except Know3dError as exc:
                self._cache[key] = exc
        found = self._cache[key]
        if isinstance(found, Know3dError):
            raise found
        return found

    def activate(self, pipeline: Know3dPipeline) -> Know3dPipeline:
        if self._active is not None and self._active is not pipeline:
            self._active.release_models()
        self._active = pipeline
        return pipeline


def _job(row: ManifestRow, cfg: Know3dConfig) -> AssetJob:
    return AssetJob(image=row.image, id=row.id or "", back=row.back if row.back is not None else cfg.back,
                    seed=row.seed if row.seed is not None else cfg.seed)


def _check_row(row: ManifestRow, pipelines: _Pipelines, out: Path, options: RunOptions) -> _Outcome | None:
    """A failed outcome when the row cannot run (checked before any model loads), else None."""
    if row.error:
        return _failed(row, InputError(row.error), "bad_input")
    try:
        pipeline = pipelines.get(row)
        pipeline.check_job(_job(row, pipeline.cfg), out)
        if options.existing is ExistingAsset.refuse and finished_asset(out, row.id or "") is not None:
            raise _refused(out, row)
    except Know3dError as exc:
        return _failed(row, exc, exc.code)
    return None


def _refused(out: Path, row: ManifestRow) -> OutputError:
    return OutputError(f"{out / (row.id or '')} holds a finished asset; pass --overwrite to replace it or "
                       "--skip-existing to keep it (or choose another --id / --id-template / --out)")


def _failed(row: ManifestRow, error: Know3dError, code: str) -> _Outcome:
    return _Outcome({"event": "asset", "id": row.id, "line": row.line, "image": str(row.image), "status": "failed",
                     "dir": None, "error": str(error), "code": code}, error=error)


def _run_row(row: ManifestRow, pipelines: _Pipelines, out: Path, options: RunOptions) -> _Outcome:
    """One checked item, under its lock."""
    pipeline = pipelines.get(row)
    job = _job(row, pipeline.cfg)
    try:
        existing = finished_asset(out, job.id)
        if existing is not None:
            if options.existing is ExistingAsset.refuse:  # finished meanwhile, by a parallel invocation
                raise _refused(out, row)
            if options.existing is ExistingAsset.skip:
                return _skipped(row, job, pipeline, out, existing)
        pipelines.activate(pipeline)
        if options.dry_run:
            return _dry_run(row, job, pipeline, out, existing is not None)
        result = pipeline.run(job, out, locked=True)
    except WriteFailure as exc:
        return _failure(row, exc, options, stop="the output disk is full" if exc.disk_full else None)
    except Know3dError as exc:
        return _failure(row, exc, options)
    except Exception as exc:  # one broken item must not end the batch
        if options.debug:
            traceback.print_exc()
        return _failure(row, Know3dError(f"unexpected {type(exc).__name__}: {exc}"), options, code="internal")
    return _Outcome({**result.event(), "line": row.line, "image": str(row.image)})


def _failure(row: ManifestRow, exc: Know3dError, options: RunOptions, *, stop: str | None = None,
             code: str | None = None) -> _Outcome:
    if options.log_failures:
        logger.error("%s: %s", row.id, exc)
    return replace(_failed(row, exc, code or exc.code), stop=stop)


def _skipped(row: ManifestRow, job: AssetJob, pipeline: Know3dPipeline, out: Path,
             meta: dict[str, Any]) -> _Outcome:
    up_to_date = _same_run(job, pipeline, meta)
    if up_to_date:
        logger.info("%s: already finished with the same inputs and config, skipped", job.id)
    else:
        logger.warning("%s: a finished asset made from other inputs or settings is kept (--skip-existing); "
                       "--overwrite regenerates it", job.id)
    mode = meta.get("mode")
    return _Outcome({"event": "asset", "id": row.id, "line": row.line, "image": str(row.image), "status": "skipped",
                     "dir": str(out / job.id), "error": None,
                     "mode": mode.get("used") if isinstance(mode, dict) else None, "seed": meta.get("seed"),
                     "files": meta.get("files", []), "up_to_date": up_to_date})


def _same_run(job: AssetJob, pipeline: Know3dPipeline, meta: dict[str, Any]) -> bool:
    """The finished asset was made from the same image bytes, text, seed and settings."""
    try:
        if not job.image.is_file():
            return False
        sha256 = file_sha256(job.image)
    except (OSError, Know3dError):  # the run itself reports what is wrong with the image
        return False
    return meta.get("key") == pipeline.expected_key(job, sha256)


def _dry_run(row: ManifestRow, job: AssetJob, pipeline: Know3dPipeline, out: Path, finished: bool) -> _Outcome:
    """Preprocess only; write `<out>/<id>/input.png` unless a finished asset is there (it is never touched)."""
    prepared = pipeline.prepare(job.image)
    files: list[str] = []
    if finished:
        logger.info("%s: dry run: the finished asset is kept as it is; its input.png was not rewritten", job.id)
    else:
        buf = io.BytesIO()
        prepared.rgba.save(buf, format="PNG")
        write_asset(out, job.id, {"input.png": buf.getvalue()})
        files = ["input.png"]
    return _Outcome({"event": "asset", "id": row.id, "line": row.line, "image": str(row.image), "status": "checked",
                     "dir": str(out / job.id), "error": None, "mode": str(pipeline.mode), "seed": job.seed,
                     "files": files, "mask": prepared.mask_source, "warnings": list(prepared.warnings)})


__all__ = ["RESULTS_FILE", "BatchSummary", "RunOptions", "run_batch", "run_rows"]
