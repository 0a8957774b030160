"""TRELLIS.2 image-to-3D inference (spec section 1), with the Know3D adapter and multiview conditioning.

Stages: DINOv3 conditioning -> sparse structure (stage 1) -> shape structured latent (512 / 1024, or the LR -> HR
cascade) -> texture latent -> O-Voxel mesh + PBR voxels. `trellis2.pipeline_type=ss` stops after stage 1 and
returns the occupancy surface instead.

Noise comes from one CPU generator seeded with the asset seed, drawn in the reference order (SS, LR shape, HR shape,
texture), so a seed reproduces on any device. Views: the front image, plus the generated back view in multiview
mode, where each sampler step averages the per-view predictions. Know3D: the tapped editor tokens reach the flows of
the stages in `adapter.stages` through their adapters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from PIL import Image

from ..errors import ConfigError, GenerationError
from ..timing import timed
from .cascade import LatentNormalization, cap_resolution, occupancy_coords
from .conditioning import DinoV3Conditioner
from .mesh import fill_small_holes, flexible_dual_grid_to_mesh, occupancy_to_mesh
from .pipeline_spec import NormalizationSpec, read_pipeline_json
from ..geometry import Asset3D
from .residency import StageModels
from .sampler import sample
from .settings import AdapterNegative, AdapterSettings, AdapterStage, PipelineType, Trellis2Settings
from .sparse.tensor import SparseTensor

if TYPE_CHECKING:
    from ..runtime import Runtime

logger = logging.getLogger(__name__)

COND_LR, COND_HR = 512, 1024  # DINOv3 input sides
SS_GRID = 64  # side of the decoded occupancy grid
LR_GRID_TO_VOXELS = 16  # the shape decoder's `upsample(.., 4)` returns coords at 16x the latent grid


@dataclass
class Trellis2Stats:
    """What a TRELLIS.2 run did, for metadata.json."""

    pipeline_type: str
    resolution: int = SS_GRID  # voxel resolution of the returned geometry
    forwards: dict[str, int] = field(default_factory=dict)  # velocity calls per sampling run
    tokens: dict[str, int] = field(default_factory=dict)  # latent tokens per sampling run, voxels decoded
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def total_forwards(self) -> int:
        return sum(self.forwards.values())


class Trellis2Generator:
    """TRELLIS.2-4B on one front image (plus optional back view / Know3D tokens) -> `Asset3D`.

    Args:
        trellis_dir: TRELLIS.2 folder (`pipeline.json`, `ckpts/`).
        ss_decoder_dir: TRELLIS-image-large folder holding the sparse-structure decoder.
        dinov3_dir: `DINOv3ViTModel` folder.
        cfg: pipeline type, token cap, sampler overrides.
        adapter_cfg: adapted stages, uncond policy, expected blocks / pool.
        adapter_dir: folder with the per-stage adapter files; None = no Know3D adapter.
        runtime: device, dtype, offload, backends.
    """

    def __init__(
        self,
        trellis_dir: Path,
        ss_decoder_dir: Path | None,
        dinov3_dir: Path,
        cfg: Trellis2Settings,
        adapter_cfg: AdapterSettings,
        adapter_dir: Path | None,
        runtime: Runtime,
    ):
        self.cfg = cfg
        self.adapter_cfg = adapter_cfg
        self.adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
        self.runtime = runtime
        self.spec = read_pipeline_json(Path(trellis_dir))
        self.pipeline_type = cfg.pipeline_type
        self.samplers = {
            AdapterStage.ss: cfg.ss.apply(self.spec.sparse_structure_sampler),
            AdapterStage.shape: cfg.shape.apply(self.spec.shape_slat_sampler),
            AdapterStage.tex: cfg.tex.apply(self.spec.tex_slat_sampler),
        }
        self.shape_norm = _normalization(self.spec.shape_slat_normalization)
        self.tex_norm = _normalization(self.spec.tex_slat_normalization)
        self.models = StageModels(self.spec, Path(trellis_dir), ss_decoder_dir, runtime)
        self.conditioner = DinoV3Conditioner(dinov3_dir, device=self.models.home, dtype=torch.float32)

    # ------------------------------------------------------------------------------------------------ public
    @torch.inference_mode()
    def generate(
        self,
        front: Image.Image,
        back_view: Image.Image | None = None,
        ext_tokens: torch.Tensor | None = None,
        seed: int = 0,
        on_stage: Callable[[str], None] | None = None,
    ) -> tuple[Asset3D, Trellis2Stats]:
        """Run TRELLIS.2.

        Args:
            front: the preprocessed (cropped, premultiplied) front view.
            back_view: the generated back view (multiview mode), conditioning every stage as a second view.
            ext_tokens: (1, h, w, C_editor) tapped editor hidden states (Know3D mode); needs adapter files.
            seed: seeds the noise of every stage.
            on_stage: called with a stage name ("ss", "shape", "tex", "decode") as each one starts.

        Returns:
            The asset in TRELLIS.2's frame, and run statistics.
        """
        if ext_tokens is not None and self.adapter_dir is None:
            raise ConfigError("editor tokens were given but no Know3D adapter is configured (adapter.weights)")
        stats = Trellis2Stats(self.pipeline_type)
        generator = torch.Generator("cpu").manual_seed(int(seed))
        views = [front] if back_view is None else [front, back_view]
        notify = on_stage or (lambda stage: None)

        notify("ss")
        with timed(stats.timings_s, "condition"):
            cond_lr = self._encode(views, COND_LR)
        with timed(stats.timings_s, "ss"):
            logits = self._sparse_structure(cond_lr, ext_tokens, generator, stats)
        plan = self.cfg.plan
        if not plan.textured:
            with timed(stats.timings_s, "mesh"):
                vertices, faces = occupancy_to_mesh(logits[0, 0])
            return Asset3D(vertices, faces, source_stage="ss", resolution=SS_GRID), stats

        ss_grid, resolution, cascade = plan.ss_grid, plan.resolution, plan.cascade
        coords = occupancy_coords(logits, ss_grid)
        del logits
        if coords.shape[0] == 0:
            raise GenerationError(
                "the sparse structure is empty: no occupied voxel (all decoder logits <= 0); try another seed or image"
            )
        cond_hr = None if self.pipeline_type is PipelineType["512"] else self._encode(views, COND_HR)

        notify("shape")
        with timed(stats.timings_s, "shape"):
            if cascade:
                lr_slat = self._shape_latent("shape_slat_flow_model_512", coords, cond_lr, ext_tokens, generator,
                                             stats, "shape_lr")
                hr_coords, resolution = self._cascade_coords(lr_slat, resolution, ss_grid, stats)
                del lr_slat
                slat = self._shape_latent("shape_slat_flow_model_1024", hr_coords, cond_hr, ext_tokens, generator,
                                          stats, "shape_hr")
            else:
                role = "shape_slat_flow_model_512" if self.pipeline_type is PipelineType["512"] else "shape_slat_flow_model_1024"
                cond = cond_lr if self.pipeline_type is PipelineType["512"] else cond_hr
                slat = self._shape_latent(role, coords, cond, ext_tokens, generator, stats, "shape")

        notify("tex")
        with timed(stats.timings_s, "tex"):
            tex_role = "tex_slat_flow_model_512" if self.pipeline_type is PipelineType["512"] else "tex_slat_flow_model_1024"
            tex_cond = cond_lr if self.pipeline_type is PipelineType["512"] else cond_hr
            tex_slat = self._texture_latent(tex_role, slat, tex_cond, ext_tokens, generator, stats)

        notify("decode")
        with timed(stats.timings_s, "decode"):
            asset = self._decode(slat, tex_slat, resolution, stats)
        stats.resolution = resolution
        return asset, stats

    # ------------------------------------------------------------------------------------------------ stages
    def _encode(self, views: list[Image.Image], resolution: int) -> list[torch.Tensor]:
        with self.models.resident(self.conditioner):
            tokens = self.conditioner.encode(views, resolution)  # (V, T, C)
        return list(tokens.float().split(1))  # one (1, T, C) tensor per view

    def _sparse_structure(
        self, cond: list[torch.Tensor], ext_tokens: torch.Tensor | None, generator: torch.Generator, stats: Trellis2Stats
    ) -> torch.Tensor:
        """Stage 1 -> (1, 1, 64, 64, 64) occupancy logits."""
        flow = self.models.network("sparse_structure_flow_model")
        res = flow.resolution
        noise = torch.randn(1, flow.in_channels, res, res, res, generator=generator)
        stats.tokens["ss"] = res**3
        latent = self._sample(AdapterStage.ss, flow, noise, cond, ext_tokens, stats, "ss")
        decoder = self.models.network("sparse_structure_decoder")
        with self.models.resident(decoder):
            logits = decoder(latent.to(self.runtime.device)).float()
        if not torch.isfinite(logits).all():
            raise GenerationError("the sparse structure decoder produced non-finite logits (NaN/Inf); try another seed")
        return logits

    def _shape_latent(
        self,
        role: str,
        coords: torch.Tensor,
        cond: list[torch.Tensor],
        ext_tokens: torch.Tensor | None,
        generator: torch.Generator,
        stats: Trellis2Stats,
        run: str,
    ) -> SparseTensor:
        """Sample a shape latent on `coords (N, 4)` and de-normalise it -> (N, 32) on the compute device."""
        flow = self.models.network(role)
        noise = SparseTensor(torch.randn(coords.shape[0], flow.out_channels, generator=generator), coords.cpu())
        stats.tokens[run] = int(coords.shape[0])
        latent = self._sample(AdapterStage.shape, flow, noise, cond, ext_tokens, stats, run)
        return latent.replace(self.shape_norm.denormalize(latent.feats))

    def _cascade_coords(
        self, lr_slat: SparseTensor, hr_resolution: int, ss_grid: int, stats: Trellis2Stats
    ) -> tuple[torch.Tensor, int]:
        """LR latent -> HR latent coords via the shape decoder's first 4 levels, quantised under the token cap."""
        decoder = self.models.network("shape_slat_decoder")
        with self.models.resident(decoder):
            fine = decoder.upsample(lr_slat, 4)
        coords, resolution = cap_resolution(fine.cpu(), ss_grid * LR_GRID_TO_VOXELS, hr_resolution,
                                            self.cfg.max_num_tokens)
        if resolution != hr_resolution:
            msg = (f"{coords.shape[0]} tokens at {hr_resolution} would exceed trellis2.max_num_tokens="
                   f"{self.cfg.max_num_tokens}; generated at {resolution} instead")
            logger.warning(msg)
            stats.warnings.append(msg)
        if coords.shape[0] == 0:
            raise GenerationError("the shape decoder kept no voxel when upsampling the low-resolution latent")
        return coords, resolution

    def _texture_latent(
        self,
        role: str,
        shape_slat: SparseTensor,
        cond: list[torch.Tensor],
        ext_tokens: torch.Tensor | None,
        generator: torch.Generator,
        stats: Trellis2Stats,
    ) -> SparseTensor:
        """Sample the PBR latent on the shape latent's coords, conditioned on the normalised shape latent."""
        flow = self.models.network(role)
        shape = shape_slat.replace(self.shape_norm.normalize(shape_slat.feats))
        noise = SparseTensor(torch.randn(len(shape_slat), flow.out_channels, generator=generator),
                             shape_slat.coords.cpu())
        stats.tokens["tex"] = len(shape_slat)
        latent = self._sample(AdapterStage.tex, flow, noise, cond, ext_tokens, stats, "tex", concat_cond=shape)
        return latent.replace(self.tex_norm.denormalize(latent.feats))

    def _decode(
        self, slat: SparseTensor, tex_slat: SparseTensor, resolution: int, stats: Trellis2Stats
    ) -> Asset3D:
        """Shape latent -> O-Voxel dual grid -> mesh; texture latent -> PBR voxels on the same final voxels."""
        shape_decoder = self.models.network("shape_slat_decoder")
        shape_decoder.set_resolution(resolution)
        with self.models.resident(shape_decoder):
            h, subs = shape_decoder(slat, return_subs=True)
            voxels = shape_decoder.dual_grid(h)[0]
        del h
        vertices, faces = flexible_dual_grid_to_mesh(
            voxels.coords, voxels.vertex_offsets, voxels.edge_flags, voxels.split_weights, resolution
        )
        vertices, faces = fill_small_holes(vertices, faces)
        if faces.shape[0] == 0:
            raise GenerationError("the decoded O-Voxel grid has no surface (no quad found); try another seed or image")

        tex_decoder = self.models.network("tex_slat_decoder")
        with self.models.resident(tex_decoder):
            out = tex_decoder(tex_slat, guide_subs=subs)
        if not torch.equal(out.coords[:, 1:].to(voxels.coords), voxels.coords):
            raise GenerationError("the texture decoder's voxels differ from the shape decoder's (internal error)")
        attrs = out.feats.float() * 0.5 + 0.5  # (M, 6): base colour, metallic, roughness, alpha
        stats.tokens["voxels"] = int(voxels.coords.shape[0])
        return Asset3D(
            vertices=vertices.cpu(),
            faces=faces.cpu(),
            source_stage="shape",
            resolution=resolution,
            voxel_coords=voxels.coords.cpu(),
            voxel_attrs=attrs.cpu(),
        )

    # ------------------------------------------------------------------------------------------------ sampling
    def _sample(
        self,
        stage: AdapterStage,
        flow: torch.nn.Module,
        noise: torch.Tensor | SparseTensor,
        cond: list[torch.Tensor],
        ext_tokens: torch.Tensor | None,
        stats: Trellis2Stats,
        run: str,
        concat_cond: SparseTensor | None = None,
    ) -> Any:
        """Run one flow with CFG against zero image tokens; multiview = one condition per view."""
        device = self.runtime.device
        adapter = self._adapter(stage, flow) if ext_tokens is not None else None
        modules = (flow,) if adapter is None else (flow, adapter)
        with self.models.resident(*modules):
            contexts = [flow.prepare_context(tokens.to(device)) for tokens in cond]
            negative = flow.null_context()
            ext = ext_neg = None
            if adapter is not None:
                tokens = ext_tokens.to(device)
                ext = adapter.condition(tokens)
                ext_neg = ext if self.adapter_cfg.uncond is AdapterNegative.same else adapter.condition(torch.zeros_like(tokens))
            extra = {} if concat_cond is None else {"concat_cond": concat_cond.to(device)}

            def velocity(x, t, c):
                return flow(x, t, c[0], editor=c[1], **extra)

            result = sample(velocity, noise.to(device), [(ctx, ext) for ctx in contexts], (negative, ext_neg),
                            self.samplers[stage])
        stats.forwards[run] = result.forwards
        return result.x

    def _adapter(self, stage: AdapterStage, flow: torch.nn.Module) -> torch.nn.Module | None:
        """The stage's adapter when the stage is in `adapter.stages`, checked against `adapter.blocks` / `pool`."""
        if stage not in self.adapter_cfg.stages:
            return None
        adapter = self.models.adapter(self.adapter_dir, stage, flow.compute_dtype)
        expected_blocks = self.adapter_cfg.blocks
        if expected_blocks is not None and sorted(int(b) for b in expected_blocks) != list(adapter.block_ids):
            raise ConfigError(
                f"adapter.blocks={list(expected_blocks)} but the {stage} adapter in {self.adapter_dir} was trained "
                f"on blocks {list(adapter.block_ids)}; set adapter.blocks=null to use them"
            )
        if self.adapter_cfg.pool is not None and self.adapter_cfg.pool != adapter.pool:
            raise ConfigError(
                f"adapter.pool={self.adapter_cfg.pool} but the {stage} adapter in {self.adapter_dir} uses "
                f"pool={adapter.pool}; set adapter.pool=null to use it"
            )
        return adapter


def _normalization(spec: NormalizationSpec) -> LatentNormalization:
    return LatentNormalization(torch.tensor(spec.mean), torch.tensor(spec.std))


__all__ = ["Trellis2Generator", "Trellis2Stats"]
