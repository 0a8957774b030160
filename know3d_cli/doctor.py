"""`know3d doctor`: one JSON object about this machine, the models and their licences. Loads no model."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from . import hub
from .config import Know3dConfig
from .errors import Know3dError
from .io import ensure_writable_dir
from .metadata import package_versions


def report(cfg: Know3dConfig, out: Path) -> dict[str, Any]:
    needed = hub.needed_models(cfg)
    models = {}
    for name in hub.MODEL_NAMES:
        spec = hub.spec_of(cfg, name)
        try:
            path: str | None = str(hub.resolve_local(cfg, name))
        except Know3dError:
            path = None
        notes = []
        if spec.gated:
            notes.append("gated: accept the licence on the hub and log in before `know3d models pull`")
        if not spec.commercial:
            notes.append("non-commercial licence")
        models[name] = {"repo": spec.repo, "needed": name in needed, "present": path is not None, "path": path,
                        "licence": spec.licence, "gated": spec.gated, "commercial": spec.commercial,
                        "size_gb": spec.size_gb, "notes": notes}
    try:
        ensure_writable_dir(out)
        writable, out_error = True, None
    except Know3dError as exc:
        writable, out_error = False, str(exc)
    missing = [n for n in needed if not models[n]["present"]]
    return {
        "event": "doctor",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": package_versions(),
        "cuda": {"available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
                 "gpus": _gpus()},
        "models": models,
        "missing_models": missing,
        "pull_command": f"know3d models pull {' '.join(missing)}" if missing else None,
        "output_dir": {"path": str(out), "writable": writable, "error": out_error},
        "ready": not missing and writable,
    }


def _gpus() -> list[dict[str, Any]]:
    gpus = []
    if not torch.cuda.is_available():
        return gpus
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        props = torch.cuda.get_device_properties(i)
        gpus.append({"index": i, "name": props.name, "capability": f"{props.major}.{props.minor}",
                     "memory_total_gb": round(total / 2**30, 2), "memory_free_gb": round(free / 2**30, 2)})
    return gpus
