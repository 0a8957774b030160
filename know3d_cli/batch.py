"""`know3d batch`: every row of a CSV manifest through one loaded pipeline, resumable, item by item."""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import metadata
from .config import Know3dConfig
from .errors import EXIT_BATCH_FAILURES, EXIT_INTERRUPTED, EXIT_OK, Know3dError
from .io import atomic_write, ensure_writable_dir
from .manifest import ManifestRow, read_manifest
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

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_BATCH_FAILURES if self.failed else EXIT_OK

    def event(self, results: Path) -> dict[str, Any]:
        return {"event": "summary", "total": self.total, "ok": self.ok, "failed": self.failed,
                "skipped": self.skipped, "interrupted": self.interrupted, "results": str(results)}


def run_batch(manifest: Path, out: Path, cfg: Know3dConfig, *, resume: bool = True, fail_fast: bool = False,
              emit: Callable[[dict[str, Any]], None], progress: Progress | None = None,
              debug: bool = False) -> BatchSummary:
    """Run every manifest row; each item succeeds or fails on its own. Ctrl-C ends after a clean summary."""
    rows = read_manifest(manifest)
    ensure_writable_dir(out)
    progress = progress or Progress(enabled=False)
    pipeline = Know3dPipeline(cfg, progress=progress, keep_models=True)
    results_path = out / RESULTS_FILE
    lines: list[str] = []
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    interrupted = False
    progress.items(len(rows))

    def record(event: dict[str, Any]) -> None:
        counts[event["status"]] += 1
        emit(event)
        lines.append(json.dumps({**event, "line": event.get("line")}, ensure_ascii=False, default=str))
        atomic_write(results_path, ("\n".join(lines) + "\n").encode("utf-8"))
        progress.advance()

    for row in rows:
        try:
            event = _run_row(row, pipeline, cfg, out, resume, debug)
        except KeyboardInterrupt:
            interrupted = True
            logger.warning("interrupted: %s was not finished (nothing of it was written)", row.id or row.image)
            break
        record(event)
        if fail_fast and event["status"] == "failed":
            logger.warning("--fail-fast: stopping after the first failure")
            break

    summary = BatchSummary(len(rows), counts["ok"], counts["failed"], counts["skipped"], interrupted)
    emit({**summary.event(results_path), "report": _write_gallery(out)})
    return summary


def _write_gallery(out: Path) -> str | None:
    """`out`'s review gallery (index.html); failing to write it is a warning, never the batch's failure."""
    from .report import write_report

    try:
        return str(write_report(out).path)
    except Know3dError as exc:
        logger.warning("no review gallery: %s", exc)
        return None


def _run_row(row: ManifestRow, pipeline: Know3dPipeline, cfg: Know3dConfig, out: Path, resume: bool,
             debug: bool) -> dict[str, Any]:
    base = {"event": "asset", "id": row.id, "line": row.line, "image": str(row.image)}
    if row.error:
        return {**base, "status": "failed", "dir": None, "error": row.error}
    job = AssetJob(image=row.image, id=row.id, back=row.back if row.back is not None else cfg.back,
                   seed=row.seed if row.seed is not None else cfg.seed)
    if resume and _finished(job, pipeline, out):
        logger.info("%s: already finished with the same inputs and config, skipped", job.id)
        return {**base, "status": "skipped", "dir": str(out / job.id), "error": None}
    try:
        result = pipeline.run(job, out)
    except Know3dError as exc:
        logger.error("%s: %s", job.id, exc)
        return {**base, "status": "failed", "dir": None, "error": str(exc), "code": exc.code}
    except Exception as exc:  # one broken item must not end the batch
        if debug:
            traceback.print_exc()
        logger.error("%s: unexpected %s: %s", job.id, type(exc).__name__, exc)
        return {**base, "status": "failed", "dir": None, "error": f"{type(exc).__name__}: {exc}", "code": "internal"}
    return {**result.event(), "line": row.line, "image": str(row.image)}


def _finished(job: AssetJob, pipeline: Know3dPipeline, out: Path) -> bool:
    """A complete output for the same inputs and config exists (metadata.json is written last)."""
    meta = metadata.read(out / job.id / metadata.METADATA_FILE)
    if meta is None or not job.image.is_file():
        return False
    if meta.get("key") != pipeline.expected_key(job, file_sha256(job.image)):
        return False
    return all((out / job.id / name).is_file() for name in meta.get("files", []))


