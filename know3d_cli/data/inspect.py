"""`know3d data inspect`: what a dataset folder holds, as one JSON object, and a contact sheet of a few samples.

Counts the union of every shard's index (what `know3d train` reads), finished sample folders no index lists yet (a
build killed between the two; the next run of its shard indexes them), indexed samples whose folder is gone,
samples in progress, and the failed assets (the latest failure of each asset that has not succeeded since). The
contact sheet shows, per sample, the front render, the back render and the 64^3 occupancy seen from behind (from the
back camera's side).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import InputError
from ..io import atomic_write
from ..outputs import read_results
from ..render import contact_sheet, depth_image
from .schema import DATASET_FILE, LATENTS_FILE, SAMPLE_FILE, SS_GRID
from .views import occupancy_azimuth
from .writer import BACK_FILE, FAILURES_DIR, FRONT_FILE, INDEX_DIR, SAMPLES_DIR, png_bytes

logger = logging.getLogger(__name__)

SHEET_FILE = "contact_sheet.png"
PICTURE_SIDE = 128  # side of each contact-sheet picture
SHOWN_FAILURES = 20  # failures listed in full (all are counted)


def inspect_dataset(root: Path, sheet: Path | None = None, samples: int = 8) -> dict[str, Any]:
    """Summarise the dataset at `root` and write a contact sheet of its first `samples` samples (by id).

    Raises:
        InputError: `root` is not a dataset (no readable dataset.json).
    """
    root = Path(root).expanduser()
    try:
        info = json.loads((root / DATASET_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{root} is not a Know3D dataset: {DATASET_FILE} not found") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{root / DATASET_FILE} is unreadable: {exc}") from exc

    index: dict[str, dict[str, Any]] = {}
    shards: dict[str, int] = {}
    duplicates = 0
    for path in sorted((root / INDEX_DIR).glob("*.jsonl")):
        records = read_results(path)
        shards[path.stem] = len(records)
        for record in records:
            duplicates += str(record.get("id")) in index
            index.setdefault(str(record.get("id")), record)
    folders = {p.name for p in (root / SAMPLES_DIR).glob("*") if (p / SAMPLE_FILE).is_file()}
    in_progress = sum(1 for p in (root / SAMPLES_DIR).glob(".*.partial-*"))  # being written, or left by a kill
    failures = _open_failures(root, folders)

    report = {
        "event": "inspect",
        "dataset": str(root),
        "schema_version": info.get("schema_version"),
        "shape_resolution": info.get("shape_resolution"),
        "dino_resolutions": info.get("dino_resolutions"),
        "models": info.get("models"),
        "samples": len(index),
        "unindexed": len(folders - set(index)),
        "indexed_missing": len(set(index) - folders),
        "duplicate_index_lines": duplicates,
        "in_progress": in_progress,
        "failed": len(failures),
        "failure_reasons": dict(Counter(f.get("reason") or f.get("code") for f in failures)),
        "failures": failures[:SHOWN_FAILURES],
        "shards": shards,
        "bytes": _sizes(root / SAMPLES_DIR, folders),
        "counts": _count_stats([r.get("counts", {}) for r in index.values()]),
        "prompts": _prompt_stats([r.get("prompts", []) for r in index.values()]),
        "sheet": None,
        "sheet_samples": [],
    }
    shown = sorted(set(index) & folders)[:samples]
    if shown:
        target = Path(sheet).expanduser() if sheet is not None else root / SHEET_FILE
        atomic_write(target, png_bytes(_sheet([root / SAMPLES_DIR / ident for ident in shown])))
        report["sheet"], report["sheet_samples"] = str(target), shown
    return report


def _open_failures(root: Path, finished: set[str]) -> list[dict[str, Any]]:
    """The latest failure of every asset (by id, else source) that has no finished sample."""
    latest: dict[str, dict[str, Any]] = {}
    for path in sorted((root / FAILURES_DIR).glob("*.jsonl")):
        for record in read_results(path):
            latest[str(record.get("id") or record.get("source"))] = record
    return [r for key, r in sorted(latest.items()) if r.get("id") not in finished]


def _sizes(samples: Path, folders: set[str]) -> dict[str, Any]:
    per_file: Counter[str] = Counter()
    for ident in folders:
        for path in (samples / ident).iterdir():
            per_file[path.name] += path.stat().st_size
    total = sum(per_file.values())
    n = max(len(folders), 1)
    return {"total": total, "per_sample": round(total / n), "per_file_per_sample": {
        name: round(size / n) for name, size in sorted(per_file.items())}}


def _count_stats(counts: list[dict[str, Any]]) -> dict[str, Any]:
    """min / mean / max of the symbolic sizes (N shape tokens, M occupied cells, K variants) over samples."""
    stats = {}
    for key in ("N", "M", "K"):
        values = [int(c[key]) for c in counts if isinstance(c.get(key), int)]
        if values:
            stats[key] = {"min": min(values), "mean": round(sum(values) / len(values), 1), "max": max(values)}
    return stats


def _prompt_stats(prompts: list[list[str]]) -> dict[str, Any]:
    from ..mllm import P_VIEW

    flat = [p for group in prompts for p in group]
    return {"total": len(flat), "distinct": len(set(flat)),
            "view_only": sum(p.strip() == P_VIEW for p in flat)}


def _sheet(folders: list[Path]) -> Image.Image:
    """One row per sample: front render, back render, occupancy seen from the back camera's side."""
    from safetensors import safe_open

    rows = []
    for folder in folders:
        record = json.loads((folder / SAMPLE_FILE).read_text(encoding="utf-8"))
        camera = record.get("camera", {})
        azimuth = camera.get("occupancy_back_azimuth_deg",
                             occupancy_azimuth(float(camera.get("azimuth_deg", 0.0)) + 180.0))
        with safe_open(str(folder / LATENTS_FILE), framework="np") as f:
            occupancy = f.get_tensor("occupancy")
        rows.append([_on_white(folder / FRONT_FILE), _on_white(folder / BACK_FILE),
                     depth_image(occupancy, SS_GRID, azimuth, size=PICTURE_SIDE)])
    return contact_sheet(rows, titles=["front", "back", "occupancy, back"])


def _on_white(path: Path) -> Image.Image:
    with Image.open(path) as image:
        rgba = image.convert("RGBA").resize((PICTURE_SIDE, PICTURE_SIDE), Image.LANCZOS)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


__all__ = ["SHEET_FILE", "inspect_dataset"]
