"""Configuration schema, composed from `configs/` with Hydra's Compose API.

Every section is a dataclass registered in Hydra's ConfigStore, so an unknown key or a value of the
wrong type fails at compose time with the full key named. The YAML files in `configs/` hold the
defaults and one-line descriptions; these classes hold the types. Stages receive only their own
section (e.g. `EditorConfig`), never the whole tree.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from enum import Enum
from typing import Any, Optional, TypeVar

from omegaconf import MISSING, OmegaConf

from .errors import ConfigError
from .train_config import TrainConfig, validate_train

logger = logging.getLogger(__name__)

MODES = ("auto", "know3d", "multiview", "trellis")
PREVIEWS = ("x0", "full", "none")
PIPELINE_TYPES = ("ss", "512", "1024", "1024_cascade", "1536_cascade")
OVOXEL_RESOLUTIONS = (256, 512, 1024)


# ------------------------------------------------------------------------------------ models
@dataclass
class ModelSpec:
    """Where one model comes from: a hub repo at a revision, or a local directory."""

    repo: str = MISSING  # Hugging Face repo id
    revision: Optional[str] = None  # pinned commit; null = the repo's default branch
    path: Optional[str] = None  # local directory that replaces the hub download
    files: list[str] = field(default_factory=list)  # allow-patterns to fetch (empty = whole repo)
    licence: str = ""  # licence name shown by `doctor` and `models list`
    gated: bool = False  # the hub requires accepting terms (and a token)
    commercial: bool = True  # false for non-commercial licences
    size_gb: float = 0.0  # approximate download size


@dataclass
class ModelsConfig:
    allow_download: bool = False  # generation may download missing models
    cache_dir: Optional[str] = None  # hub cache (default: huggingface_hub's)
    tiny_root: str = MISSING  # where `know3d demo` writes the tiny random model set
    editor: ModelSpec = field(default_factory=ModelSpec)
    mllm: ModelSpec = field(default_factory=ModelSpec)
    dinov3: ModelSpec = field(default_factory=ModelSpec)
    trellis2: ModelSpec = field(default_factory=ModelSpec)
    ss_decoder: ModelSpec = field(default_factory=ModelSpec)
    birefnet: ModelSpec = field(default_factory=ModelSpec)
    trellis2_encoders: ModelSpec = field(default_factory=ModelSpec)  # shape/texture SC-VAE encoders (data build)
    ss_encoder: ModelSpec = field(default_factory=ModelSpec)  # sparse-structure VAE encoder (data build)


# ------------------------------------------------------------------------------------ stages
@dataclass
class PreprocessConfig:
    background: str = "auto"  # auto | alpha | threshold | birefnet
    threshold_tolerance: float = 0.08  # colour distance (0-1) that still counts as background
    alpha_cutoff: float = 0.8  # alpha above this fraction of 255 defines the crop box
    max_side: int = 1024  # downscale so the longer side is at most this
    max_pixels: int = 89_478_485  # refuse larger images (decompression-bomb guard)
    min_foreground: float = 0.0005  # fraction of pixels that must be foreground


@dataclass
class MllmConfig:
    expand: bool = False  # let Qwen2.5-VL write a part-level back description first
    max_new_tokens: int = 200  # length limit of that description
    image_side: int = 448  # longest side of the photo shown to the MLLM


@dataclass
class EditorConfig:
    pipeline: str = "plus"  # plus (QwenImageEditPlusPipeline, 2509/2511) | edit (QwenImageEditPipeline)
    steps: int = 40  # denoising steps of the full schedule
    true_cfg_scale: float = 4.0  # true classifier-free guidance scale (1 disables CFG)
    negative_prompt: str = " "  # negative prompt for true CFG
    resolution: int = 1024  # output side length in pixels (square)
    condition_area: Optional[int] = None  # VAE condition image area in pixels; null = pipeline default
    lora: Optional[str] = None  # LoRA file or repo to load into the transformer
    lora_weight: float = 1.0  # LoRA scale


@dataclass
class TapConfig:
    block: int = 30  # MMDiT block whose image-stream output is tapped
    step_frac: float = 0.25  # tap at step index round(step_frac * steps)
    tokens: str = "target"  # target (back-view tokens only) | all (target + condition tokens)


@dataclass
class AdapterConfig:
    weights: Optional[str] = None  # directory with <stage>.json + <stage>.safetensors per stage (null = none)
    stages: list[str] = field(default_factory=lambda: ["ss", "shape"])  # flows that get ext tokens
    blocks: Optional[list[int]] = None  # flow blocks with an ext_attn; null = as in the adapter json (else checked)
    pool: Optional[int] = None  # 1 | 2 (2x2 token pooling); null = as in the adapter json (else checked)
    uncond: str = "zeros"  # unconditional CFG pass sees: zeros | same (the ext tokens too)


@dataclass
class SamplerConfig:
    steps: Optional[int] = None  # null = value from pipeline.json
    guidance_strength: Optional[float] = None  # null = value from pipeline.json
    guidance_rescale: Optional[float] = None  # null = value from pipeline.json
    rescale_t: Optional[float] = None  # null = value from pipeline.json


@dataclass
class Trellis2Config:
    pipeline_type: str = "1024_cascade"  # ss | 512 | 1024 | 1024_cascade | 1536_cascade
    max_num_tokens: int = 49152  # cascade token cap (1536 is lowered in steps of 128)
    ss: SamplerConfig = field(default_factory=SamplerConfig)  # sparse-structure sampler overrides
    shape: SamplerConfig = field(default_factory=SamplerConfig)  # shape sampler overrides
    tex: SamplerConfig = field(default_factory=SamplerConfig)  # texture sampler overrides


@dataclass
class ExportConfig:
    format: str = "glb"  # glb | obj | ply
    faces: int = 500_000  # target face count after decimation
    texture_size: int = 2048  # baked texture side in pixels
    texture_format: str = "png"  # png (every viewer) | webp (smaller; GLB needs EXT_texture_webp)
    alpha_mode: str = "OPAQUE"  # OPAQUE | BLEND | MASK
    double_sided: bool = True  # glTF material doubleSided
    origin: str = "base"  # base (stands on y = 0, centred in x and z) | center (bounding-box centre at the origin)
    height: Optional[float] = None  # asset height in metres; null keeps TRELLIS.2's unit cube
    preview: bool = True  # preview.png: colour and normal renders from the front, right, back and left
    preview_size: int = 384  # side in pixels of each preview tile and turntable frame
    preview_faces: int = 100_000  # previews render a decimated copy of larger meshes (CPU cost grows with faces)
    turntable: bool = False  # turntable.webp: a looping turntable of the exported model
    turntable_frames: int = 36  # frames per turn
    turntable_fps: float = 12.0  # frames per second


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32 (set by the precision group)
    offload: str = "sequential"  # sequential (one stage resident at a time) | none
    compile: bool = False  # torch.compile the transformer blocks
    attention: str = "auto"  # auto | sdpa | flash_attn
    sparse_conv: str = "auto"  # auto | torch


@dataclass
class AssetConfig:
    max_file_mb: float = 2048.0  # refuse asset files larger than this many MiB
    max_faces: int = 10_000_000  # refuse assets with more triangles than this
    max_extent: float = 1.0e5  # refuse assets whose largest bounding-box side is larger (file units)
    min_extent: float = 1.0e-6  # refuse assets whose largest bounding-box side is smaller (file units)
    max_texture_side: int = 4096  # textures with a longer side are downscaled (area filter) when loaded


@dataclass
class OVoxelConfig:
    resolution: int = 1024  # flexible dual grid side: 256 | 512 | 1024 (TRELLIS.2's shape-VAE grids)
    face_weight: float = 1.0  # QEF weight of the planes of triangles overlapping a voxel
    boundary_weight: float = 0.2  # QEF weight of open-boundary edges passing through a voxel
    regularization_weight: float = 0.01  # QEF pull towards the mean of a voxel's edge crossings
    chunk_size: int = 1_000_000  # lattice candidates / voxels processed at once (bounds peak memory)


@dataclass
class ViewsConfig:
    size: int = 1024  # render side in pixels, before the inference crop
    azimuth_range: list[float] = field(default_factory=lambda: [0.0, 360.0])  # front azimuth drawn here (degrees)
    elevation_range: list[float] = field(default_factory=lambda: [0.0, 30.0])  # shared elevation drawn here (degrees)
    fov: float = 40.0  # vertical field of view of the perspective camera (degrees)
    shading: str = "lit"  # lit (PBR base colour under a key and ambient light) | flat (unlit base colour)


@dataclass
class DataConfig:
    asset: AssetConfig = field(default_factory=AssetConfig)  # what assets are accepted
    ovoxel: OVoxelConfig = field(default_factory=OVoxelConfig)  # mesh -> O-Voxel conversion
    views: ViewsConfig = field(default_factory=ViewsConfig)  # front/back renders of each sample


@dataclass
class Know3dConfig:
    mode: str = "auto"  # auto | know3d | multiview | trellis
    back: str = ""  # text about the hidden back side
    seed: Optional[int] = None  # null = random (the drawn seed is recorded)
    preview: str = "x0"  # x0 | full | none
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    mllm: MllmConfig = field(default_factory=MllmConfig)
    editor: EditorConfig = field(default_factory=EditorConfig)
    tap: TapConfig = field(default_factory=TapConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    trellis2: Trellis2Config = field(default_factory=Trellis2Config)
    export: ExportConfig = field(default_factory=ExportConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)  # `know3d train` (train_config.py)
    data: DataConfig = field(default_factory=DataConfig)


# ------------------------------------------------------------------------------------ loading
def config_dir() -> Path:
    """The `configs/` folder: inside the installed wheel, or at the source checkout's root."""
    packaged = resources.files("know3d_cli").joinpath("configs")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "configs"


def _register() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="know3d_schema", node=Know3dConfig)


def load_config(overrides: list[str] | tuple[str, ...] = ()) -> Know3dConfig:
    """Compose `configs/config.yaml` with Hydra overrides and validate it against the schema.

    Raises:
        ConfigError: unknown key, wrong type, or an invalid choice; the message names the key.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _register()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="know3d"):
            cfg = compose(config_name="config", overrides=list(overrides))
        obj = OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(f"invalid configuration: {_one_line(exc)}") from exc
    assert isinstance(obj, Know3dConfig)
    validate(obj)
    return obj


def validate(cfg: Know3dConfig) -> None:
    """Check choices and ranges that types alone cannot express."""
    checks: list[tuple[str, Any, tuple[Any, ...]]] = [
        ("mode", cfg.mode, MODES),
        ("preview", cfg.preview, PREVIEWS),
        ("preprocess.background", cfg.preprocess.background, ("auto", "alpha", "threshold", "birefnet")),
        ("editor.pipeline", cfg.editor.pipeline, ("plus", "edit")),
        ("tap.tokens", cfg.tap.tokens, ("target", "all")),
        ("adapter.uncond", cfg.adapter.uncond, ("zeros", "same")),
        ("trellis2.pipeline_type", cfg.trellis2.pipeline_type, PIPELINE_TYPES),
        ("export.format", cfg.export.format, ("glb", "obj", "ply")),
        ("export.texture_format", cfg.export.texture_format, ("webp", "png")),
        ("export.alpha_mode", cfg.export.alpha_mode, ("OPAQUE", "BLEND", "MASK")),
        ("export.origin", cfg.export.origin, ("base", "center")),
        ("runtime.dtype", cfg.runtime.dtype, ("auto", "bfloat16", "float16", "float32")),
        ("runtime.offload", cfg.runtime.offload, ("sequential", "none")),
        ("runtime.attention", cfg.runtime.attention, ("auto", "sdpa", "flash_attn")),
        ("runtime.sparse_conv", cfg.runtime.sparse_conv, ("auto", "torch")),
        ("data.ovoxel.resolution", cfg.data.ovoxel.resolution, OVOXEL_RESOLUTIONS),
        ("data.views.shading", cfg.data.views.shading, ("lit", "flat")),
    ]
    for key, value, allowed in checks:
        if value not in allowed:
            raise ConfigError(f"invalid value {value!r} for {key}; expected one of: {', '.join(map(str, allowed))}")
    for stage in cfg.adapter.stages:
        if stage not in ("ss", "shape", "tex"):
            raise ConfigError(f"invalid adapter.stages entry {stage!r}; expected ss, shape or tex")
    if cfg.adapter.pool not in (None, 1, 2):
        raise ConfigError(f"invalid value {cfg.adapter.pool!r} for adapter.pool; expected null, 1 or 2")
    ranges = [
        ("tap.step_frac", cfg.tap.step_frac, 0.0, 1.0),
        ("editor.steps", cfg.editor.steps, 2, 1000),
        ("editor.resolution", cfg.editor.resolution, 16, 4096),
        ("tap.block", cfg.tap.block, 0, 10_000),
        ("export.faces", cfg.export.faces, 4, 100_000_000),
        ("export.texture_size", cfg.export.texture_size, 16, 16384),
        ("export.preview_size", cfg.export.preview_size, 32, 4096),
        ("export.preview_faces", cfg.export.preview_faces, 1000, 100_000_000),
        ("export.turntable_frames", cfg.export.turntable_frames, 2, 1000),
        ("export.turntable_fps", cfg.export.turntable_fps, 0.1, 120.0),
        ("preprocess.threshold_tolerance", cfg.preprocess.threshold_tolerance, 0.0, 1.0),
        ("preprocess.alpha_cutoff", cfg.preprocess.alpha_cutoff, 0.0, 1.0),
        ("data.asset.max_faces", cfg.data.asset.max_faces, 1, 2**31 - 1),
        ("data.asset.max_texture_side", cfg.data.asset.max_texture_side, 1, 65536),
        ("data.ovoxel.chunk_size", cfg.data.ovoxel.chunk_size, 1024, 2**31 - 1),
        ("data.views.size", cfg.data.views.size, 16, 8192),
        ("data.views.fov", cfg.data.views.fov, 1.0, 170.0),
    ]
    for key, value, lo, hi in ranges:
        if not lo <= value <= hi:
            raise ConfigError(f"invalid value {value!r} for {key}; expected a number in [{lo}, {hi}]")
    for key, pair in (("data.views.azimuth_range", cfg.data.views.azimuth_range),
                      ("data.views.elevation_range", cfg.data.views.elevation_range)):
        if len(pair) != 2 or pair[0] > pair[1]:
            raise ConfigError(f"invalid value {list(pair)!r} for {key}; expected [low, high] with low <= high")
    if not 0.0 < cfg.data.asset.min_extent < cfg.data.asset.max_extent:
        raise ConfigError("invalid data.asset extents; expected 0 < data.asset.min_extent < data.asset.max_extent")
    if cfg.export.height is not None and not 0.0 < cfg.export.height <= 1.0e6:
        raise ConfigError(f"invalid value {cfg.export.height!r} for export.height; expected null or metres in (0, 1e6]")
    if cfg.runtime.device != "auto" and not (cfg.runtime.device == "cpu" or cfg.runtime.device.startswith("cuda")):
        raise ConfigError(f"invalid value {cfg.runtime.device!r} for runtime.device; expected auto, cpu, cuda or cuda:N")
    validate_train(cfg.train)


E = TypeVar("E", bound=Enum)


def parse_choice(choices: type[E], value: E | str, key: str) -> E:
    """`choices(value)` for an Enum of config strings; an unknown value is a `ConfigError` listing the choices."""
    try:
        return choices(value)
    except ValueError:
        allowed = ", ".join(str(c.value) for c in choices)
        raise ConfigError(f"invalid value {value!r} for {key}; expected one of: {allowed}") from None


def to_container(cfg: Know3dConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-ready data (for metadata.json and `config show`)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def to_yaml(cfg: Know3dConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def _one_line(exc: BaseException) -> str:
    """Hydra/OmegaConf errors span several lines; keep what names the key and the problem."""
    text = str(exc)
    if exc.__cause__ is not None:  # "Error merging override x=y" hides the reason in the cause
        text = f"{text}: {exc.__cause__}"
    text = re.sub(r"\.\s*To append to your config use \+\S+", ".", text)  # '+key' cannot help: the schema is closed
    keep = []
    for line in (ln.strip() for ln in text.splitlines()):
        if line.startswith(("Config search path", "provider=", "reference_type=", "object_type=")):
            continue
        if line.startswith("full_key:") or not line:
            continue
        keep.append(line)
    return " ".join(keep).replace("Available options in", "; available options in")


__all__ = [
    "AdapterConfig", "AssetConfig", "DataConfig", "OVoxelConfig", "ViewsConfig", "EditorConfig", "ExportConfig", "Know3dConfig", "MllmConfig", "ModelSpec",
    "ModelsConfig", "PreprocessConfig", "RuntimeConfig", "SamplerConfig", "TapConfig", "Trellis2Config",
    "config_dir", "load_config", "parse_choice", "to_container", "to_yaml", "validate",
]
