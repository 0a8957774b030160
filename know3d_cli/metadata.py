"""metadata.json: what was run, with which models and settings, how long it took; and the resume key."""

from __future__ import annotations

import hashlib
import json
import platform
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
