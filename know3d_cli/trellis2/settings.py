"""What a caller of the TRELLIS.2 library chooses, as typed values: pipeline type, token cap, sampler overrides and
how a Know3D adapter is used.

These dataclasses are also the app's `trellis2` config section (and, extended by `weights`, its `adapter` section):
every key is defined here once, with its default and a one-line comment, and OmegaConf checks the types and the
Enum choices when the configuration is composed. The library's own code takes the members, never strings. They are
plain (not frozen) dataclasses because OmegaConf's override merging needs writable nodes; treat them as values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Optional

from ..choices import Choice

if TYPE_CHECKING:  # torch-free at run time: the app's config schema imports this module
    from .sampler import SamplerSettings

PipelineType = Choice("PipelineType", [(name, name) for name in ("ss", "512", "1024", "1024_cascade", "1536_cascade")])
PipelineType.__doc__ = """What TRELLIS.2 generates (config `trellis2.pipeline_type`); see `PIPELINE_PLANS`."""


@dataclass(frozen=True)
class PipelinePlan:
    """The stages one `PipelineType` runs."""

    textured: bool  # False: stop after the sparse structure and mesh its occupancy surface (`ss`)
    ss_grid: int  # side the 64^3 occupancy is max-pooled to before the shape stage (32 or 64)
    resolution: int  # voxel resolution of the final geometry (cascades may lower 1536 under the token cap)
    cascade: bool  # shape at 512, decoder-upsampled coords, shape again at the HR resolution
    flow_resolution: int  # 512 or 1024: which shape/texture flows run (after the cascade's LR step), and the
    #                       DINOv3 input side they are conditioned at


SS_GRID = 64  # side of the decoded sparse-structure occupancy grid

PIPELINE_PLANS: dict[PipelineType, PipelinePlan] = {
    PipelineType["ss"]: PipelinePlan(textured=False, ss_grid=SS_GRID, resolution=SS_GRID, cascade=False,
                                     flow_resolution=512),
    PipelineType["512"]: PipelinePlan(textured=True, ss_grid=32, resolution=512, cascade=False, flow_resolution=512),
    PipelineType["1024"]: PipelinePlan(textured=True, ss_grid=64, resolution=1024, cascade=False,
                                       flow_resolution=1024),
    PipelineType["1024_cascade"]: PipelinePlan(textured=True, ss_grid=32, resolution=1024, cascade=True,
                                               flow_resolution=1024),
    PipelineType["1536_cascade"]: PipelinePlan(textured=True, ss_grid=32, resolution=1536, cascade=True,
                                               flow_resolution=1024),
}


@dataclass
class SamplerOverrides:
    """Changes to one stage's `pipeline.json` sampler settings; None keeps the file's value."""

    steps: Optional[int] = None  # null = value from pipeline.json
    guidance_strength: Optional[float] = None  # null = value from pipeline.json
    guidance_rescale: Optional[float] = None  # null = value from pipeline.json
    rescale_t: Optional[float] = None  # null = value from pipeline.json

    def apply(self, settings: SamplerSettings) -> SamplerSettings:
        """`settings` with every non-None override applied."""
        changes = {name: getattr(self, name) for name in ("steps", "guidance_strength", "guidance_rescale",
                                                           "rescale_t") if getattr(self, name) is not None}
        return replace(settings, **changes)


@dataclass
class Trellis2Settings:
    """How TRELLIS.2 runs (config section `trellis2`)."""

    pipeline_type: PipelineType = PipelineType["1024_cascade"]  # ss | 512 | 1024 | 1024_cascade | 1536_cascade
    max_num_tokens: int = 49152  # cascade token cap (1536 is lowered in steps of 128)
    ss: SamplerOverrides = field(default_factory=SamplerOverrides)  # sparse-structure sampler overrides
    shape: SamplerOverrides = field(default_factory=SamplerOverrides)  # shape sampler overrides
    tex: SamplerOverrides = field(default_factory=SamplerOverrides)  # texture sampler overrides

    @property
    def plan(self) -> PipelinePlan:
        return PIPELINE_PLANS[self.pipeline_type]


class AdapterStage(Choice):
    """The TRELLIS.2 flows a Know3D adapter can steer; also the file stems inside an adapter folder."""

    ss = "ss"  # the sparse-structure flow
    shape = "shape"  # both shape flows (512 and 1024)
    tex = "tex"  # the texture flows


class AdapterNegative(Choice):
    """What the unconditional (CFG) pass of an adapted flow sees of the editor tokens."""

    zeros = "zeros"  # all-zero editor tokens
    same = "same"  # the same tokens as the conditional pass


@dataclass
class AdapterSettings:
    """How the Know3D adapter is used (config section `adapter`, less its `weights` folder)."""

    stages: list[AdapterStage] = field(default_factory=lambda: [AdapterStage.ss, AdapterStage.shape])  # flows that
    #                                                                           get editor tokens: ss, shape, tex
    blocks: Optional[list[int]] = None  # flow blocks with an editor cross-attention; null = as in the adapter json
    #                                     (else checked against it)
    pool: Optional[int] = None  # 1 | 2 (2x2 token pooling); null = as in the adapter json (else checked)
    uncond: AdapterNegative = AdapterNegative.zeros  # unconditional CFG pass sees: zeros | same (the editor tokens)


__all__ = [
    "PIPELINE_PLANS",
    "SS_GRID",
    "AdapterNegative",
    "AdapterSettings",
    "AdapterStage",
    "PipelinePlan",
    "PipelineType",
    "SamplerOverrides",
    "Trellis2Settings",
]
