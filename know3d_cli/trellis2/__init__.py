"""TRELLIS.2 (clean-room): a self-contained image-to-3D library with the Know3D adapter.

It imports nothing from the know3d app (config, runtime, timing, io, pipeline, cli, hub, ...), only the foundation
modules every layer shares (`know3d_cli.errors`, `know3d_cli.choices`, `know3d_cli.geometry`); device, precision and
settings are passed in. Entry point: `Trellis2Pipeline.from_pretrained(...)(image, ...)`; the stages it chains are
public in `trellis2.stages` for training and benchmarks.
"""

from ..geometry import Asset3D
from .checkpoint import Precision
from .conditioning import DinoV3Conditioner
from .nn.attention import AttentionBackend
from .pipeline import StageHook, Trellis2Output, Trellis2Pipeline
from .residency import Offload, Residency
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
from .sparse.conv import ConvBackend

__all__ = [
    "PIPELINE_PLANS",
    "AdapterNegative",
    "AdapterSettings",
    "AdapterStage",
    "Asset3D",
    "AttentionBackend",
    "ConvBackend",
    "DinoV3Conditioner",
    "Offload",
    "PipelinePlan",
    "PipelineType",
    "Precision",
    "Residency",
    "SamplerOverrides",
    "StageHook",
    "Trellis2Output",
    "Trellis2Pipeline",
    "Trellis2Settings",
]
