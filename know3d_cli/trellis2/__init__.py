"""TRELLIS.2 (clean-room): a self-contained image-to-3D library with the Know3D adapter.

It imports nothing from the know3d app (config, runtime, timing, io, pipeline, cli, hub, ...), only the foundation
modules every layer shares (`know3d_cli.errors`, `know3d_cli.choices`, `know3d_cli.geometry`); device, precision and
settings are passed in. Entry point: `Trellis2Pipeline.from_pretrained(...)(image, ...)`; the stages it chains are
public in `trellis2.stages` for training and benchmarks.

The names below are imported on first use (PEP 562): `settings` and `backends` are torch-free, so a caller that
only needs the settings types (the app's config schema) does not pay for loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Asset3D": "..geometry",
    "Precision": ".checkpoint",
    "DinoV3Conditioner": ".conditioning",
    "AttentionBackend": ".backends",
    "ConvBackend": ".backends",
    "Offload": ".backends",
    "StageHook": ".pipeline",
    "Trellis2Output": ".pipeline",
    "Trellis2Pipeline": ".pipeline",
    "Residency": ".residency",
    "PIPELINE_PLANS": ".settings",
    "AdapterNegative": ".settings",
    "AdapterSettings": ".settings",
    "AdapterStage": ".settings",
    "PipelinePlan": ".settings",
    "PipelineType": ".settings",
    "SamplerOverrides": ".settings",
    "Trellis2Settings": ".settings",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from ..geometry import Asset3D
    from .backends import AttentionBackend, ConvBackend, Offload
    from .checkpoint import Precision
    from .conditioning import DinoV3Conditioner
    from .pipeline import StageHook, Trellis2Output, Trellis2Pipeline
    from .residency import Residency
    from .settings import (
        PIPELINE_PLANS,
        AdapterNegative,
        AdapterSettings,
        AdapterStage,
        PipelinePlan,
        PipelineType,
        SamplerOverrides,
        Trellis2Settings,
    )

__all__ = sorted(_EXPORTS)
