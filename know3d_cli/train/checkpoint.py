"""Training checkpoints: everything needed to continue a run exactly, written atomically.

    <output_dir>/checkpoints/
      step-0001000/
        state.json            # step, run identity, optimiser hyper-parameters, clipper, data order, RNG (python, numpy)
        trainable.safetensors # the trained parameters (fp32), by name
        ema.safetensors       # their EMA (absent when train.ema.rate=0)
        optimizer.safetensors # AdamW moments and step counts, `<param name>::<state key>`
        rng.safetensors       # torch CPU (and CUDA) generator states of every process
      latest                  # name of the newest complete checkpoint

A checkpoint folder is written under a temporary name and renamed when complete, then `latest` is replaced, so a
killed run leaves either the previous or the new checkpoint, never a partial one. Anything unreadable or missing
is a `CheckpointError` (exit 3) naming the folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io import atomic_write
from .models import read_json_object

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
FORMAT = "know3d-train-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step-(\d{7,})$")
_STATE, _TRAINABLE, _EMA, _OPTIMIZER, _RNG = (
    "state.json", "trainable.safetensors", "ema.safetensors", "optimizer.safetensors", "rng.safetensors")


@dataclass
class TrainingState:
    """A run's full state after `step` optimiser steps."""

    step: int
    identity: dict[str, Any]  # what was trained (stage, trainable kind, flow and adapter args, parameter shapes)
    trainable: dict[str, torch.Tensor]  # fp32 trained parameters by name
    optimizer: dict[str, Any]  # {"state": {name: {key: tensor}}, "param_groups": [...]} keyed by parameter name
    ema: dict[str, torch.Tensor] = field(default_factory=dict)  # EMA by name (empty without EMA)
    ema_updates: int = 0
    clip: dict[str, Any] = field(default_factory=dict)  # AdaptiveGradClip state
    data_order: dict[str, Any] = field(default_factory=dict)  # seed and dataset size of the sample order
    rng: list[dict[str, Any]] = field(default_factory=list)  # per process: python, numpy, torch, cuda states


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def capture_rng() -> dict[str, Any]:
    """This process's global generator states (python, numpy, torch CPU and CUDA)."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": _jsonable(random.getstate()),
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    random.setstate(_tupled(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(output_dir: Path, state: TrainingState, keep: int) -> Path:
    """Write `output_dir/checkpoints/step-NNNNNNN` atomically, point `latest` at it, keep the newest `keep`."""
    from safetensors.torch import save

    root = Path(output_dir) / CHECKPOINTS_DIR
    final = root / checkpoint_name(state.step)
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    optimizer_tensors = {f"{name}::{key}": value.detach().cpu().contiguous()
                         for name, entries in state.optimizer["state"].items() for key, value in entries.items()}
    rng_tensors, rng_json = {}, []
    for rank, rng in enumerate(state.rng):
        rng_tensors[f"rank{rank}.torch"] = rng["torch"]
        for device, cuda in enumerate(rng.get("cuda", [])):
            rng_tensors[f"rank{rank}.cuda{device}"] = cuda
        rng_json.append({"python": rng["python"], "numpy": rng["numpy"], "cuda_devices": len(rng.get("cuda", []))})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": state.step,
        "identity": state.identity,
        "ema_updates": state.ema_updates,
        "clip": state.clip,
        "data_order": state.data_order,
        "param_groups": _jsonable(state.optimizer["param_groups"]),
        "rng": rng_json,
    }
    atomic_write(tmp / _TRAINABLE, save({k: v.detach().cpu().float().contiguous() for k, v in state.trainable.items()}))
    if state.ema:
        atomic_write(tmp / _EMA, save({k: v.detach().cpu().contiguous() for k, v in state.ema.items()}))
    atomic_write(tmp / _OPTIMIZER, save(optimizer_tensors))
    atomic_write(tmp / _RNG, save(rng_tensors))
    atomic_write(tmp / _STATE, (json.dumps(meta, indent=1) + "\n").encode())
    if final.exists():  # the same step written again (a resumed run that stopped there): replace it
        trash = root / f".{final.name}.old-{os.getpid()}"
        os.replace(final, trash)
        shutil.rmtree(trash)
    os.replace(tmp, final)
    atomic_write(root / LATEST_FILE, f"{final.name}\n".encode())
    for old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("checkpoint %s", final)
    return final


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)] if root.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def resolve_checkpoint(path_or_latest: str, output_dir: Path) -> Path:
    """`latest` -> the newest checkpoint of `output_dir`; a run folder -> its newest; else the folder itself."""
    if path_or_latest == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise CheckpointError(f"no checkpoint to resume in {Path(output_dir) / CHECKPOINTS_DIR}")
        return found[-1]
    path = Path(path_or_latest).expanduser()
    if (path / CHECKPOINTS_DIR).is_dir():
        return resolve_checkpoint("latest", path)
    if not path.is_dir():
        raise CheckpointError(f"training checkpoint {path} not found")
    return path


def load_training_checkpoint(path: Path) -> TrainingState:
    """Read a checkpoint folder; any missing or damaged part is a one-line `CheckpointError`."""
    path = Path(path)
    meta = _read_state(path)
    try:
        trainable = _read_tensors(path / _TRAINABLE)
        ema = _read_tensors(path / _EMA) if (path / _EMA).exists() else {}
        flat = _read_tensors(path / _OPTIMIZER)
        rng_tensors = _read_tensors(path / _RNG)
        optimizer_state: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in flat.items():
            name, _, entry = key.rpartition("::")
            optimizer_state.setdefault(name, {})[entry] = value
        param_groups = [{**group, "betas": tuple(group["betas"])} if "betas" in group else group
                        for group in meta["param_groups"]]
        rng = []
        for rank, entry in enumerate(meta["rng"]):
            state = {"python": entry["python"], "numpy": entry["numpy"], "torch": rng_tensors[f"rank{rank}.torch"]}
            if entry["cuda_devices"]:
                state["cuda"] = [rng_tensors[f"rank{rank}.cuda{d}"] for d in range(entry["cuda_devices"])]
            rng.append(state)
        return TrainingState(
            step=int(meta["step"]), identity=meta["identity"], trainable=trainable,
            optimizer={"state": optimizer_state, "param_groups": param_groups}, ema=ema,
            ema_updates=int(meta["ema_updates"]), clip=meta["clip"], data_order=meta["data_order"], rng=rng,
        )
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"training checkpoint {path} is damaged: {type(exc).__name__}: {exc}") from exc


def _read_state(path: Path) -> dict[str, Any]:
    file = path / _STATE
    meta = read_json_object(file, f"training checkpoint {path} is incomplete or not a checkpoint: {_STATE} not found")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a know3d training checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{file} has checkpoint version {meta.get('version')!r}; this know3d reads {VERSION}")
    return meta


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not file.is_file():
        raise CheckpointError(f"training checkpoint {file.parent} is incomplete: {file.name} not found")
    try:
        return load_file(str(file))
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise CheckpointError(f"training checkpoint {file.parent} is damaged: {file.name} is unreadable ({exc})") \
            from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


__all__ = [
    "CHECKPOINTS_DIR", "LATEST_FILE", "TrainingState", "capture_rng", "checkpoint_name", "list_checkpoints",
    "load_training_checkpoint", "resolve_checkpoint", "restore_rng", "save_training_checkpoint",
]
