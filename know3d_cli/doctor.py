"""`know3d doctor`: one JSON object about this machine, the models and their licences. Loads no model, and not
torch either (it answers at once; GPUs come from `nvidia-smi`, see `machine.py`)."""

from __future__ import annotations

import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import hub, machine
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
    gpus, torch_cuda = machine.gpus(), machine.torch_cuda_build()
    return {
        "event": "doctor",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": package_versions(),
        "cuda": {"available": bool(gpus) and torch_cuda is not None, "torch_cuda": torch_cuda,
                 "gpus": [asdict(gpu) for gpu in gpus]},
        "models": models,
        "missing_models": missing,
        "pull_command": f"know3d models pull {' '.join(missing)}" if missing else None,
        "output_dir": {"path": str(out), "writable": writable, "error": out_error},
        "ready": not missing and writable,
    }

