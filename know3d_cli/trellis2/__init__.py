"""TRELLIS.2 (clean-room): networks, sparse ops, sampler, mesh extraction, and the image-to-3D generator."""

from ..geometry import Asset3D
from .conditioning import DinoV3Conditioner
from .generate import Trellis2Generator, Trellis2Stats
from .nn.attention import AttentionBackend
from .residency import Offload
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
    "SamplerOverrides",
    "Trellis2Generator",
    "Trellis2Settings",
    "Trellis2Stats",
]
