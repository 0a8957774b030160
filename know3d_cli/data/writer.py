"""Writing a dataset folder in the layout of `schema.py`: the one writer of `know3d data build` and the synthetic set.

Safety rules, so that any number of shard processes can write into one folder and be killed at any moment:

- `dataset.json` is created once (a complete temporary file hard-linked into place, which fails if another process
  won the race); every later writer compares its settings with it and refuses to mix incompatible samples.
- A sample folder is written by `outputs.write_asset` under the id's `outputs.AssetLock` (`samples/.<id>.lock`):
  into `samples/.<id>.partial-<hex>/`, renamed to `samples/<id>/` when complete, so a sample folder exists only
  whole; the leftovers of a killed writer are removed when the sample is built again (`outputs.recover`). A full
  disk is a `WriteFailure` (`disk_full`), which stops the build.
- Each shard appends only to its own `index/<shard>.jsonl` and `failures/<shard>.jsonl` (one JSON line each, flushed
  and fsynced), and on start rewrites its own index without lines a killed run may have cut short, and adds the
  finished samples that a kill left unindexed. The training reader reads the union of every shard's index.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..errors import ConfigError, InputError, WriteFailure
from ..io import atomic_write, ensure_writable_dir
from ..outputs import AssetLock, read_results, write_asset
from ..shard import Shard
from .schema import (
    CONDITION_TENSORS,
    CONDITIONS_FILE,
    DATASET_FILE,
    LATENT_TENSORS,
    LATENTS_FILE,
    SAMPLE_FILE,
)

logger = logging.getLogger(__name__)

SAMPLES_DIR, INDEX_DIR, FAILURES_DIR = "samples", "index", "failures"
FRONT_FILE, BACK_FILE = "front.png", "back.png"
# dataset.json keys that every shard writing into one folder must agree on (the rest describes who built it)
COMPATIBILITY_KEYS = ("schema_version", "shape_resolution", "dino_resolutions", "variants", "models", "settings")


@dataclass(frozen=True, eq=False)
class Sample:
    """Everything one sample folder holds."""

    id: str
    source: str  # the asset file (or a synthetic:// name)
    sha256: str  # hex digest of the source asset's bytes
    latents: dict[str, torch.Tensor]  # LATENT_TENSORS
    conditions: dict[str, torch.Tensor]  # CONDITION_TENSORS; hdit[k] was tapped with prompts[k]
    front: Image.Image  # RGBA front render (inference crop)
    back: Image.Image  # RGBA back render
    prompts: tuple[str, ...]  # the K exact editor instructions
    info: dict[str, Any] = field(default_factory=dict)  # the rest of sample.json (camera, caption, seeds, timings)

    def sample_json(self) -> dict[str, Any]:
        counts = {"M": int(self.latents["occupancy"].shape[0]), "K": len(self.prompts)}
        if "shape_coords" in self.latents:  # absent from an SS-only dataset
            counts["N"] = int(self.latents["shape_coords"].shape[0])
        return {"id": self.id, "source": self.source, "sha256": self.sha256, "prompts": list(self.prompts),
                "counts": counts, **self.info}


def check_sample(sample: Sample) -> None:
    """Every schema tensor present (optional ones may be absent) with its dtype and consistent sizes; K = prompts.

    Raises:
        ValueError: the sample breaks the schema (a bug in whatever made it).
    """
    sizes: dict[str, int] = {"K": len(sample.prompts)}
    for group, specs in ((sample.latents, LATENT_TENSORS), (sample.conditions, CONDITION_TENSORS)):
        unknown = set(group) - {spec.name for spec in specs}
        if unknown:
            raise ValueError(f"sample {sample.id}: tensors {sorted(unknown)} are not in the schema")
        for spec in specs:
            if spec.name not in group:
                if spec.optional:
                    continue
                raise ValueError(f"sample {sample.id}: tensor {spec.name} is missing")
            problem = spec.problem(group[spec.name], sizes)
            if problem:
                raise ValueError(f"sample {sample.id}: {problem}")


def index_line(record: dict[str, Any]) -> dict[str, Any]:
    """A sample's index line, from its sample.json."""
    return {"id": record["id"], "dir": f"{SAMPLES_DIR}/{record['id']}", "source": record["source"],
            "sha256": record["sha256"], "prompts": record["prompts"], "counts": record.get("counts", {})}


class DatasetWriter:
    """Writes samples of one shard into a dataset folder (module docstring for the safety rules).

    Args:
        root: the dataset folder (created if needed).
        shard: which shard this process writes (names its index and failure files).
        info: dataset.json content; when the file exists, its `COMPATIBILITY_KEYS` must equal these.

    Raises:
        ConfigError: the folder holds a dataset built with other settings (exit 2).
        OutputError: the folder cannot be written.
    """

    def __init__(self, root: Path, shard: Shard, info: dict[str, Any]):
        self.root = ensure_writable_dir(Path(root).expanduser())
        self.shard = shard
        self.samples = self.root / SAMPLES_DIR
        self.index_path = self.root / INDEX_DIR / f"{shard.name}.jsonl"
        self.failures_path = self.root / FAILURES_DIR / f"{shard.name}.jsonl"
        self.info = _claim_info(self.root / DATASET_FILE, info)
        self.samples.mkdir(exist_ok=True)
        self.indexed = self._repair_index()  # id -> index file name, over every shard

    def finished(self, sample_id: str) -> bool:
        return (self.samples / sample_id / SAMPLE_FILE).is_file()

    def adopt(self, sample_id: str) -> None:
        """Index a finished sample that no index lists (its writer was killed between rename and index line)."""
        if sample_id in self.indexed or not self.finished(sample_id):
            return
        record = json.loads((self.samples / sample_id / SAMPLE_FILE).read_text(encoding="utf-8"))
        self._append(self.index_path, index_line(record))
        self.indexed[sample_id] = self.index_path.name
        logger.info("%s: finished by an earlier run but not indexed; indexed now", sample_id)

    def write(self, sample: Sample) -> Path:
        """Check `sample` against the schema, write its folder atomically, then index it. Returns the folder.

        Raises:
            WriteFailure: the folder could not be written (disk full, I/O error); nothing of it is left.
        """
        from safetensors.torch import save

        check_sample(sample)
        record = sample.sample_json()
        files = {
            LATENTS_FILE: save({k: v.contiguous() for k, v in sample.latents.items()}),
            CONDITIONS_FILE: save({k: v.contiguous() for k, v in sample.conditions.items()}),
            FRONT_FILE: png_bytes(sample.front),
            BACK_FILE: png_bytes(sample.back),
            SAMPLE_FILE: (json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8"),
        }
        with AssetLock(self.samples, sample.id):  # taking it cleans a killed writer's leftovers of this id
            final = write_asset(self.samples, sample.id, files)
        if sample.id not in self.indexed:  # a sample of an index another shard layout wrote keeps that line
            self._append(self.index_path, index_line(record))
            self.indexed[sample.id] = self.index_path.name
        return final

    def fail(self, record: dict[str, Any]) -> None:
        """Record one failed asset in this shard's failure file."""
        self._append(self.failures_path, record)

    # ------------------------------------------------------------------------------------------------ internals
    @staticmethod
    def _append(path: Path, record: dict[str, Any]) -> None:
        """Append one JSON line (a line torn by a full disk is skipped by `read_json_lines`).

        Raises:
            WriteFailure: the line could not be written (disk full, I/O error).
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise WriteFailure(f"cannot append to {path} ({exc.strerror or exc})", os_errno=exc.errno) from exc

    def _repair_index(self) -> dict[str, str]:
        """Rewrite this shard's index without unreadable lines, duplicates or samples whose folder is gone; return
        every indexed id (all shards) with the file that lists it."""
        indexed: dict[str, str] = {}
        for path in sorted((self.root / INDEX_DIR).glob("*.jsonl")):
            if path == self.index_path:
                continue
            for record in read_results(path):
                indexed.setdefault(str(record.get("id")), path.name)
        if not self.index_path.is_file():
            return indexed
        kept = []
        for record in read_results(self.index_path):
            ident = str(record.get("id"))
            if ident not in indexed and self.finished(ident):
                indexed[ident] = self.index_path.name
                kept.append(record)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
        if text != self.index_path.read_text(encoding="utf-8", errors="replace"):
            logger.info("%s: dropped index lines of unfinished or repeated samples", self.index_path)
            atomic_write(self.index_path, text.encode("utf-8"))
        return indexed


def _claim_info(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Create dataset.json with `info`, or check the existing one against it; returns the file's content."""
    data = (json.dumps(info, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        try:
            atomic_write(tmp, data)
            os.link(tmp, path)  # atomic create-if-absent: exactly one writer wins
            return json.loads(data)
        except FileExistsError:
            pass  # another shard was first: check against its file below
        finally:
            tmp.unlink(missing_ok=True)
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is unreadable ({exc}); it is not a dataset this know3d wrote") from exc
    ours = json.loads(data)  # the same JSON round trip as the file (tuples -> lists, ...)
    differences = _differences({k: existing.get(k) for k in COMPATIBILITY_KEYS},
                               {k: ours.get(k) for k in COMPATIBILITY_KEYS})
    if differences:
        shown = ", ".join(differences[:5]) + (f" and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise ConfigError(f"{path.parent} holds a dataset built with other settings ({shown}); build into a new --out "
                          "or use the settings it was built with")
    return existing


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def png_bytes(image: Image.Image) -> bytes:
    """`image` encoded as PNG."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


__all__ = [
    "BACK_FILE", "COMPATIBILITY_KEYS", "FAILURES_DIR", "FRONT_FILE", "INDEX_DIR", "SAMPLES_DIR", "DatasetWriter",
    "Sample", "check_sample", "index_line", "png_bytes",
]
