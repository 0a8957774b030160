"""`Trellis2Pipeline`: TRELLIS.2-4B image-to-3D, with multiview conditioning and the Know3D adapter, in the manner of
a diffusers pipeline.

    pipe = Trellis2Pipeline.from_pretrained(trellis_dir, dinov3_dir=..., ss_decoder_dir=..., device="cuda",
                                            precision=Precision.reference, offload=Offload.sequential)
    out = pipe(front, seed=7)                      # plain TRELLIS.2
    out = pipe(front, back_view=back, seed=7)      # multiview: the velocity is averaged over both views
    out = pipe(front, editor_tokens=tap, seed=7)   # Know3D: needs `adapter_dir`
    out.asset                                      # `Asset3D`, in TRELLIS.2's frame

`from_pretrained` reads `pipeline.json` and DINOv3; the flows and decoders load (strictly) on first use and stay
cached, so one pipeline serves many assets. `__call__` runs `check_inputs`, then the stages of `trellis2.stages`
in the reference order: DINOv3 conditioning -> sparse structure -> shape latent (512 / 1024, or the LR -> HR
cascade) -> texture latent -> O-Voxel mesh + PBR voxels; `pipeline_type=ss` stops after the sparse structure and
meshes its occupancy. Noise comes from one CPU generator seeded with `seed`, so a seed reproduces on any device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import torch
from PIL import Image
from torch import nn

from ..errors import ConfigError, GenerationError
from ..geometry import Asset3D
from .cascade import LatentNormalization, occupancy_coords
from .checkpoint import Precision, load_adapter, load_model
from .conditioning import DinoV3Conditioner
from .mesh import occupancy_to_mesh
from .nn.attention import AttentionBackend, set_attention_backend
from .pipeline_spec import PipelineSpec, read_pipeline_json
from .residency import Offload, Residency
from .sampler import SamplerSettings, StepCallback
from .settings import SS_GRID, AdapterSettings, AdapterStage, PipelineType, Trellis2Settings
from .sparse.conv import ConvBackend, set_conv_backend
from .stages import (
    AdapterInput,
    FlowSample,
    ImageCondition,
    cascade_coords,
    decode_shape,
    decode_sparse_structure,
    decode_texture,
    encode_views,
    sample_shape_latent,
    sample_sparse_structure,
    sample_texture_latent,
    shape_mesh,
)

logger = logging.getLogger(__name__)

SS_CONDITION_RESOLUTION = 512  # DINOv3 input side of the sparse-structure flow
# Called around every stage with its name ("condition", "ss", "mesh", "shape", "tex", "decode"), to time or report it.
StageHook = Callable[[str], AbstractContextManager[None]]


@dataclass(frozen=True)
class Samplers:
    """The sampler settings of the three flows (`pipeline.json` with the settings' overrides)."""

    ss: SamplerSettings
    shape: SamplerSettings
    tex: SamplerSettings


@dataclass(frozen=True)
class Trellis2Output:
    """What one call generated, and what it took."""

    asset: Asset3D  # the mesh (and PBR voxels unless pipeline_type=ss), on the CPU
    pipeline_type: PipelineType
    resolution: int  # voxel resolution of the geometry (64 for ss; a 1536 cascade may be lowered)
    forwards: dict[str, int]  # velocity calls per sampling run: ss, shape | shape_lr + shape_hr, tex
    tokens: dict[str, int]  # latent tokens per sampling run, and `voxels` decoded
    warnings: tuple[str, ...]  # e.g. the token cap lowered the resolution

    @property
    def total_forwards(self) -> int:
        return sum(self.forwards.values())


class Trellis2Pipeline:
    """TRELLIS.2 on one front image, plus an optional back view (multiview) or editor tokens (Know3D).

    Build it with `from_pretrained`; the constructor takes what that method reads and decides.
    """

    # The networks in the order a run uses them (diffusers' `model_cpu_offload_seq`): with sequential offload only
    # the one in use (with its Know3D adapter) is on the GPU. The shape decoder serves the cascade, then decoding.
    model_offload_sequence = (
        "image_cond_model",
        "sparse_structure_flow_model",
        "sparse_structure_decoder",
        "shape_slat_flow_model_512",
        "shape_slat_decoder",
        "shape_slat_flow_model_1024",
        "tex_slat_flow_model_512",
        "tex_slat_flow_model_1024",
        "shape_slat_decoder",
        "tex_slat_decoder",
    )

    def __init__(
        self,
        spec: PipelineSpec,
        trellis_dir: Path,
        ss_decoder_dir: Path | None,
        image_encoder: DinoV3Conditioner,
        settings: Trellis2Settings,
        adapter_dir: Path | None,
        adapter: AdapterSettings,
        residency: Residency,
        precision: Precision,
        attention: AttentionBackend,
        sparse_conv: ConvBackend,
        compile: bool,
    ):
        self.spec = spec
        self.trellis_dir = Path(trellis_dir)
        self.ss_decoder_dir = Path(ss_decoder_dir) if ss_decoder_dir is not None else None
        self.image_encoder = image_encoder
        self.settings = settings
        self.adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
        self.adapter_settings = adapter
        self.residency = residency
        self.precision = precision
        self.attention = attention
        self.sparse_conv = sparse_conv
        self.compile = compile
        self.samplers = Samplers(
            ss=settings.ss.apply(spec.sparse_structure_sampler),
            shape=settings.shape.apply(spec.shape_slat_sampler),
            tex=settings.tex.apply(spec.tex_slat_sampler),
        )
        self.shape_normalization = LatentNormalization.from_spec(spec.shape_slat_normalization)
        self.texture_normalization = LatentNormalization.from_spec(spec.tex_slat_normalization)
        self._networks: dict[str, nn.Module] = {}
        self._adapters: dict[AdapterStage, nn.Module] = {}

    @classmethod
    def from_pretrained(
        cls,
        trellis_dir: Path | str,
        *,
        dinov3_dir: Path | str,
        ss_decoder_dir: Path | str | None = None,
        adapter_dir: Path | str | None = None,
        settings: Trellis2Settings | None = None,
        adapter: AdapterSettings | None = None,
        device: torch.device | str = "cpu",
        precision: Precision = Precision.fp32,
        offload: Offload = Offload.none,
        attention: AttentionBackend = AttentionBackend.auto,
        sparse_conv: ConvBackend = ConvBackend.auto,
        compile: bool = False,
    ) -> Trellis2Pipeline:
        """Read a TRELLIS.2 folder (and DINOv3); networks load on first use.

        Args:
            trellis_dir: the TRELLIS.2-4B folder (`pipeline.json`, `ckpts/`).
            dinov3_dir: the `DINOv3ViTModel` folder.
            ss_decoder_dir: the TRELLIS-image-large folder holding the sparse-structure decoder.
            adapter_dir: folder of Know3D adapter files (`<stage>.json` + `.safetensors`); None = no adapter.
            settings: pipeline type, token cap, sampler overrides (default: `Trellis2Settings()`).
            adapter: which stages use the adapter and how (default: `AdapterSettings()`).
            device: where the networks compute.
            precision: `reference` mixed precision (GPUs) or exact `fp32`.
            offload: where networks wait between stages (see `residency`).
            attention, sparse_conv: compute backends set on every layer.
            compile: `torch.compile` the sparse-structure flow's blocks (dense, fixed shapes: no recompiles).

        Raises:
            ModelMissingError: `pipeline.json` or DINOv3 missing. CheckpointError: a malformed `pipeline.json`.
        """
        residency = Residency(device, offload, cls.model_offload_sequence)
        spec = read_pipeline_json(Path(trellis_dir))
        image_encoder = DinoV3Conditioner(dinov3_dir, device=residency.home, dtype=torch.float32)
        return cls(spec, Path(trellis_dir), Path(ss_decoder_dir) if ss_decoder_dir is not None else None,
                   image_encoder, settings or Trellis2Settings(), Path(adapter_dir) if adapter_dir else None,
                   adapter or AdapterSettings(), residency, precision, attention, sparse_conv, compile)

    # ------------------------------------------------------------------------------------------------ run
    def check_inputs(
        self,
        image: Image.Image,
        back_view: Image.Image | None = None,
        editor_tokens: torch.Tensor | None = None,
        seed: int = 0,
    ) -> None:
        """Refuse what `__call__` cannot use, naming the argument (ValueError)."""
        for name, value in (("image", image), ("back_view", back_view)):
            if value is not None and not isinstance(value, Image.Image):
                raise ValueError(f"`{name}` must be a PIL image, got {type(value).__name__}")
        if editor_tokens is not None:
            if self.adapter_dir is None:
                raise ValueError("`editor_tokens` were given but the pipeline has no Know3D adapter "
                                 "(from_pretrained(adapter_dir=...))")
            if editor_tokens.ndim != 4 or editor_tokens.shape[0] != 1:
                raise ValueError(f"`editor_tokens` must be (1, h, w, C), got {tuple(editor_tokens.shape)}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**64:
            raise ValueError(f"`seed` must be an integer in [-2^63, 2^64), got {seed!r}")

    @torch.inference_mode()
    def __call__(
        self,
        image: Image.Image,
        back_view: Image.Image | None = None,
        editor_tokens: torch.Tensor | None = None,
        seed: int = 0,
        stage_hook: StageHook | None = None,
        on_step: StepCallback | None = None,
    ) -> Trellis2Output:
        """Generate one asset.

        Args:
            image: the preprocessed (cropped, premultiplied) front view.
            back_view: a generated back view (multiview mode), conditioning every stage as a second view.
            editor_tokens: (1, h, w, C_editor) tapped editor hidden states (Know3D mode); they reach the flows of
                `adapter.stages` through their adapters.
            seed: seeds the noise of every stage.
            stage_hook: entered around each stage with its name, e.g. to time it or report progress.
            on_step: called as `on_step(n, N)` after each sampler step of the running flow (progress display).

        Raises:
            GenerationError: a stage produced nothing usable (empty structure, no surface, non-finite logits).
        """
        self.check_inputs(image, back_view, editor_tokens, seed)
        hook = stage_hook or (lambda stage: nullcontext())
        plan = self.settings.plan
        generator = torch.Generator("cpu").manual_seed(seed)
        views = [image] if back_view is None else [image, back_view]
        forwards: dict[str, int] = {}
        tokens: dict[str, int] = {}
        warnings: list[str] = []
        self.residency.start_run()

        with hook("condition"):
            image_conditions = self._encode(views, {SS_CONDITION_RESOLUTION, plan.flow_resolution})

        with hook("ss"):
            flow = self.network("sparse_structure_flow_model")
            adapter = self._adapter_input(AdapterStage.ss, flow, editor_tokens)
            with self._on_device("sparse_structure_flow_model", flow, adapter):
                ss = sample_sparse_structure(flow, image_conditions[SS_CONDITION_RESOLUTION], self.samplers.ss,
                                             generator, adapter, on_step=on_step)
            _record(forwards, tokens, "ss", ss)
            decoder = self.network("sparse_structure_decoder")
            with self.residency.on_device("sparse_structure_decoder", decoder):
                logits = decode_sparse_structure(decoder, ss.latent)

        if not plan.textured:
            with hook("mesh"):
                vertices, faces = occupancy_to_mesh(logits[0, 0])
            asset = Asset3D(vertices, faces, source_stage="ss", resolution=SS_GRID,
                            voxel_coords=occupancy_coords(logits, SS_GRID)[:, 1:].cpu())
            return self._output(asset, forwards, tokens, warnings)

        coords = occupancy_coords(logits, plan.ss_grid)
        del logits
        if coords.shape[0] == 0:
            raise GenerationError(
                "the sparse structure is empty: no occupied voxel (all decoder logits <= 0); try another seed or image"
            )
        resolution = plan.resolution
        flow_condition = image_conditions[plan.flow_resolution]

        with hook("shape"):
            if plan.cascade:
                low = self._shape_latent(512, coords, image_conditions[512], generator, editor_tokens, on_step)
                _record(forwards, tokens, "shape_lr", low)
                shape_decoder = self.network("shape_slat_decoder")
                with self.residency.on_device("shape_slat_decoder", shape_decoder):
                    high = cascade_coords(shape_decoder, low.latent, plan.ss_grid, plan.resolution,
                                          self.settings.max_num_tokens)
                del low
                if high.warning is not None:
                    logger.warning(high.warning)
                    warnings.append(high.warning)
                resolution = high.resolution
                shape = self._shape_latent(plan.flow_resolution, high.coords, flow_condition, generator,
                                           editor_tokens, on_step)
                _record(forwards, tokens, "shape_hr", shape)
            else:
                shape = self._shape_latent(plan.flow_resolution, coords, flow_condition, generator, editor_tokens,
                                           on_step)
                _record(forwards, tokens, "shape", shape)

        with hook("tex"):
            role = f"tex_slat_flow_model_{plan.flow_resolution}"
            flow = self.network(role)
            adapter = self._adapter_input(AdapterStage.tex, flow, editor_tokens)
            with self._on_device(role, flow, adapter):
                texture = sample_texture_latent(flow, shape.latent, flow_condition, self.samplers.tex,
                                                self.shape_normalization, self.texture_normalization, generator,
                                                adapter, on_step=on_step)
            _record(forwards, tokens, "tex", texture)

        with hook("decode"):
            shape_decoder = self.network("shape_slat_decoder")
            with self.residency.on_device("shape_slat_decoder", shape_decoder):
                voxels = decode_shape(shape_decoder, shape.latent, resolution)
            vertices, faces = shape_mesh(voxels)
            tex_decoder = self.network("tex_slat_decoder")
            with self.residency.on_device("tex_slat_decoder", tex_decoder):
                attrs = decode_texture(tex_decoder, texture.latent, voxels)
            tokens["voxels"] = int(voxels.grid.coords.shape[0])
        asset = Asset3D(vertices=vertices.cpu(), faces=faces.cpu(), source_stage="shape", resolution=resolution,
                        voxel_coords=voxels.grid.coords.cpu(), voxel_attrs=attrs.cpu())
        return self._output(asset, forwards, tokens, warnings)

    # ---------------------------------------------------------------------------------------------- stages
    def _encode(self, views: list[Image.Image], resolutions: set[int]) -> dict[int, ImageCondition]:
        with self.residency.on_device("image_cond_model", self.image_encoder):
            return {side: encode_views(self.image_encoder, views, side) for side in sorted(resolutions)}

    def _shape_latent(
        self,
        flow_resolution: int,
        coords: torch.Tensor,
        image: ImageCondition,
        generator: torch.Generator,
        editor_tokens: torch.Tensor | None,
        on_step: StepCallback | None = None,
    ) -> FlowSample:
        role = f"shape_slat_flow_model_{flow_resolution}"
        flow = self.network(role)
        adapter = self._adapter_input(AdapterStage.shape, flow, editor_tokens)
        with self._on_device(role, flow, adapter):
            return sample_shape_latent(flow, coords, image, self.samplers.shape, self.shape_normalization,
                                       generator, adapter, on_step=on_step)

    def _on_device(self, role: str, flow: nn.Module, adapter: AdapterInput | None) -> AbstractContextManager[None]:
        modules = (flow,) if adapter is None else (flow, adapter.adapter)
        return self.residency.on_device(role, *modules)

    def _output(self, asset: Asset3D, forwards: dict[str, int], tokens: dict[str, int],
                warnings: list[str]) -> Trellis2Output:
        return Trellis2Output(asset, self.settings.pipeline_type, asset.resolution, forwards, tokens, tuple(warnings))

    # -------------------------------------------------------------------------------------------- networks
    @property
    def loaded_networks(self) -> Mapping[str, nn.Module]:
        """The networks loaded so far, by `pipeline.json` role (read-only view)."""
        return MappingProxyType(self._networks)

    def network(self, role: str) -> nn.Module:
        """The network of a `pipeline.json` role, loaded strictly on first use (on the residency's home device)."""
        if role not in self._networks:
            stem = self.spec.checkpoint(role, self.trellis_dir, self.ss_decoder_dir)
            model = load_model(stem, device=self.residency.home, precision=self.precision)
            if hasattr(model, "set_attention_backend"):
                model.set_attention_backend(self.attention)
            set_conv_backend(model, self.sparse_conv)
            if self.compile and role == "sparse_structure_flow_model":
                for block in model.blocks:  # dense, fixed shapes: the one flow that compiles without recompiles
                    block.compile()
            self._networks[role] = model
        return self._networks[role]

    def _adapter_input(
        self, stage: AdapterStage, flow: nn.Module, editor_tokens: torch.Tensor | None
    ) -> AdapterInput | None:
        """The stage's adapter and the editor tokens, when tokens are given and the stage is in `adapter.stages`;
        the adapter is checked against `adapter.blocks` / `adapter.pool`."""
        if editor_tokens is None or stage not in self.adapter_settings.stages:
            return None
        if stage not in self._adapters:
            adapter = load_adapter(self.adapter_dir, stage, device=self.residency.home, dtype=flow.compute_dtype)
            set_attention_backend(adapter, self.attention)
            self._check_adapter(stage, adapter)
            self._adapters[stage] = adapter
        return AdapterInput(self._adapters[stage], editor_tokens, self.adapter_settings.uncond)

    def _check_adapter(self, stage: AdapterStage, adapter: nn.Module) -> None:
        expected_blocks = self.adapter_settings.blocks
        if expected_blocks is not None and sorted(int(b) for b in expected_blocks) != list(adapter.block_ids):
            raise ConfigError(
                f"adapter.blocks={list(expected_blocks)} but the {stage} adapter in {self.adapter_dir} was trained "
                f"on blocks {list(adapter.block_ids)}; set adapter.blocks=null to use them"
            )
        expected_pool = self.adapter_settings.pool
        if expected_pool is not None and expected_pool != adapter.pool:
            raise ConfigError(
                f"adapter.pool={expected_pool} but the {stage} adapter in {self.adapter_dir} uses "
                f"pool={adapter.pool}; set adapter.pool=null to use it"
            )


def _record(forwards: dict[str, int], tokens: dict[str, int], run: str, sample: FlowSample) -> None:
    forwards[run] = sample.forwards
    tokens[run] = sample.tokens


__all__ = ["SS_CONDITION_RESOLUTION", "Samplers", "StageHook", "Trellis2Output", "Trellis2Pipeline"]
