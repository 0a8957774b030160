"""metadata.json: what was run, where and when, with which models and settings, how long it took, what the exported
mesh is; and the resume key."""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
import struct
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from typing import Any, Mapping

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
        from .machine import gpus, host_name

        gpu = None
        if device.startswith("cuda"):
            import torch  # already loaded by the run that asks

            index = torch.device(device).index
            name = torch.cuda.get_device_name(index if index is not None else torch.cuda.current_device())
            drivers = {info.driver for info in gpus()}
            gpu = {"name": name, "driver": drivers.pop() if len(drivers) == 1 else (sorted(drivers) or None)}
        return cls(started_at=datetime.now(timezone.utc).isoformat(), command_line=list(sys.argv),
                   host=host_name(), gpu=gpu)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_TEXTURE_SUFFIXES = (".png", ".webp", ".jpg", ".jpeg")


def exported_summary(files: Mapping[str, bytes], model: str) -> dict[str, Any]:
    """Counts, bounding box and texture sizes of the exported mesh `files[model]`, read back from the bytes written
    (so they describe the file, whatever the exporter did): {"vertices", "faces", "bbox": {"min", "max", "size"},
    "textures": {name: [width, height]}}. Textures are the GLB's embedded images and image files beside the mesh."""
    data = files[model]
    if model.endswith(".glb"):
        summary = _glb_summary(data)
    else:
        summary = _trimesh_summary(data, model.rsplit(".", 1)[-1])
    for name, blob in files.items():
        if name.lower().endswith(_TEXTURE_SUFFIXES) and name not in ("input.png", "back.png", "preview.png"):
            size = _image_size(blob)
            if size is not None:
                summary["textures"][name] = size
    return summary


def _bbox(lo: list[float], hi: list[float]) -> dict[str, list[float]]:
    return {"min": [round(v, 6) for v in lo], "max": [round(v, 6) for v in hi],
            "size": [round(b - a, 6) for a, b in zip(lo, hi)]}


def _glb_summary(data: bytes) -> dict[str, Any]:
    """From the GLB's JSON chunk: POSITION accessors carry min/max (required by glTF), index accessors the counts."""
    length = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20:20 + length])
    accessors = gltf.get("accessors", [])
    vertices = faces = 0
    lo, hi = [math.inf] * 3, [-math.inf] * 3
    for mesh in gltf.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            position = accessors[primitive["attributes"]["POSITION"]]
            vertices += position["count"]
            if "indices" in primitive:
                faces += accessors[primitive["indices"]]["count"] // 3
            else:
                faces += position["count"] // 3
            lo = [min(a, b) for a, b in zip(lo, position["min"])]
            hi = [max(a, b) for a, b in zip(hi, position["max"])]
    textures: dict[str, list[int]] = {}
    views = gltf.get("bufferViews", [])
    binary_start = 20 + length + 8  # the BIN chunk's data
    for index, image in enumerate(gltf.get("images", [])):
        if "bufferView" not in image:
            continue
        view = views[image["bufferView"]]
        start = binary_start + view.get("byteOffset", 0)
        size = _image_size(data[start:start + view["byteLength"]])
        if size is not None:
            textures[image.get("name") or f"image{index}"] = size
    return {"vertices": vertices, "faces": faces, "bbox": _bbox(lo, hi) if vertices else None, "textures": textures}


def _trimesh_summary(data: bytes, file_type: str) -> dict[str, Any]:
    import trimesh

    mesh = trimesh.load(io.BytesIO(data), file_type=file_type, force="mesh", process=False)
    bounds = mesh.bounds
    return {"vertices": int(len(mesh.vertices)), "faces": int(len(mesh.faces)),
            "bbox": _bbox(bounds[0].tolist(), bounds[1].tolist()) if bounds is not None else None, "textures": {}}


def _image_size(blob: bytes) -> list[int] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as image:  # reads the header only
            return list(image.size)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
