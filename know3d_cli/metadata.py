"""metadata.json: what was run, where and when, with which models and settings, how long it took; and the resume
key."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from typing import Any

SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"

_PACKAGES = ("know3d", "torch", "transformers", "diffusers", "huggingface_hub", "safetensors", "trimesh",
             "pygltflib", "xatlas", "fast-simplification", "numpy", "pillow")

# Keys that change how a run executes but not what it produces; they don't invalidate finished outputs.
_NOT_IN_KEY = {"runtime": ("offload", "compile"), "models": ("allow_download", "cache_dir", "tiny_root")}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_key(input_sha256: str, back: str, seed: int | None, config: dict[str, Any]) -> str:
    """Hash of everything that determines an asset: same key + complete output = nothing to redo."""
    cfg = json.loads(json.dumps(config))  # deep copy of plain data
    for section, keys in _NOT_IN_KEY.items():
        for key in keys:
            cfg.get(section, {}).pop(key, None)
    cfg.pop("back", None)
    cfg.pop("seed", None)
    cfg.pop("train", None)  # training settings never change a generated asset
    blob = json.dumps({"input": input_sha256, "back": back, "seed": seed, "config": cfg}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def to_json_bytes(meta: dict[str, Any]) -> bytes:
    return (dumps(meta, indent=2) + "\n").encode("utf-8")


def dumps(obj: Any, indent: int | None = None) -> str:
    """JSON text that always encodes as UTF-8: characters that cannot (undecodable bytes of a file name, kept by
    Python as lone surrogates) are written as JSON escapes such as \\udcff."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=str)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def read(path) -> dict[str, Any] | None:
    """A finished asset's metadata, or None when absent or unreadable (an unfinished asset)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) and meta.get("schema_version") == SCHEMA_VERSION else None


# ------------------------------------------------------------------------------------ the run and what it wrote
@dataclass(frozen=True)
class RunEnvironment:
    """Where and when an asset was made (metadata.json `run`), captured as its run starts."""

    started_at: str  # UTC, ISO 8601 ("2026-11-30T00:27:50.123456+00:00")
    command_line: list[str]  # sys.argv as the process received it
    host: str
    gpu: dict[str, Any] | None  # {"name", "driver"} of the CUDA device the run uses; None on a CPU

    @classmethod
    def capture(cls, device: str) -> RunEnvironment:
        """The environment now, for a run on `device` ("cpu", "cuda", "cuda:1")."""
        from .machine import host_name

        return cls(started_at=datetime.now(timezone.utc).isoformat(), command_line=list(sys.argv),
                   host=host_name(), gpu=_gpu(device) if device.startswith("cuda") else None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.lru_cache(maxsize=None)
def _gpu(device: str) -> dict[str, Any]:
    """{"name", "driver"} of CUDA device `device` (asked once per process: `nvidia-smi` takes a moment)."""
    import torch  # already loaded by the run that asks

    from .machine import gpus

    index = torch.device(device).index
    name = torch.cuda.get_device_name(index if index is not None else torch.cuda.current_device())
    drivers = sorted({info.driver for info in gpus()})
    return {"name": name, "driver": drivers[0] if len(drivers) == 1 else (drivers or None)}
