"""What an output folder holds, per asset: finished assets (their `metadata.json`) and failures (`results.jsonl`).

A finished asset is a sub-folder `<id>/` whose `metadata.json` reads (asset folders appear whole, see `outputs.py`;
the hidden folders of writes in progress are skipped). Failures come from the batch
results file: its last line per asset wins, so a later success or failure replaces an earlier one, and a torn or
foreign line is skipped. A failed asset whose folder still holds an earlier finished output shows both: the
reason of the failure and the output that was kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from .. import metadata
from ..outputs import RESULTS_FILE, read_results

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GalleryEntry:
    id: str  # asset id (= folder name), or "line N" for a manifest row without a usable id
    status: str  # "ok" | "failed"
    meta: Optional[dict[str, Any]] = field(default=None, repr=False)  # metadata.json of the finished output
    files: tuple[str, ...] = ()  # files of the finished output that exist, as listed in its metadata
    error: Optional[str] = None  # why it failed (failed entries)
    code: Optional[str] = None  # machine-readable error code (failed entries)
    image: Optional[str] = None  # the input image path, as the results file gives it

    @property
    def has_output(self) -> bool:
        return self.meta is not None


def collect_entries(out: Path) -> list[GalleryEntry]:
    """Every asset of `out`: the results file's order first, then other finished folders by name."""
    finished = {path.parent.name: meta for path in sorted(out.glob(f"*/{metadata.METADATA_FILE}"))
                if not path.parent.name.startswith(".")  # an asset folder being written or replaced (outputs.py)
                and (meta := metadata.read(path)) is not None}
    entries: list[GalleryEntry] = []
    for key, event in _last_results(out / RESULTS_FILE).items():
        meta = finished.pop(key, None)
        if event.get("status") == "failed":
            entries.append(GalleryEntry(key, "failed", meta, _present(out, key, meta), _text(event.get("error")),
                                        _text(event.get("code")), _text(event.get("image"))))
        elif meta is not None:
            entries.append(GalleryEntry(key, "ok", meta, _present(out, key, meta), image=_text(event.get("image"))))
    for key, meta in finished.items():
        entries.append(GalleryEntry(key, "ok", meta, _present(out, key, meta)))
    return entries


def _last_results(path: Path) -> dict[str, Mapping[str, Any]]:
    """The last asset event per id in a results file, in order of first appearance (empty without the file); a row
    without an id (a manifest row that failed before it got one) is keyed by its manifest line."""
    try:
        records = read_results(path)
    except OSError as exc:
        logger.warning("cannot read %s (%s); failures are not shown", path, exc.strerror or exc)
        return {}
    events: dict[str, Mapping[str, Any]] = {}
    for number, event in enumerate(records, 1):
        if event.get("event", "asset") == "asset":
            events[str(event.get("id") or f"line {event.get('line', number)}")] = event
    return events


def _present(out: Path, key: str, meta: Optional[dict[str, Any]]) -> tuple[str, ...]:
    if meta is None:
        return ()
    listed = meta.get("files")
    names = [name for name in listed if isinstance(name, str)] if isinstance(listed, list) else []
    return tuple(name for name in names if (out / key / name).is_file())


def _text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


__all__ = ["GalleryEntry", "collect_entries"]
