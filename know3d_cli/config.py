"""Configuration schema, composed from `configs/` with Hydra's Compose API.

Every section is a dataclass registered in Hydra's ConfigStore, so an unknown key, a value of the wrong type or a
value outside an Enum's choices fails at compose time with the full key named. The YAML files in `configs/` hold the
defaults and one-line descriptions; these classes hold the types. Each fixed set of choices is one `Choice` Enum,
defined once: the app's here, TRELLIS.2's in the library (`trellis2.settings`, the attention and sparse-conv
backends, the offload policy), whose settings dataclasses are the `trellis2` and `adapter` sections. Code past
`load_config` receives Enum members and never re-checks strings. Stages receive only their own section (e.g.
`EditorConfig`), never the whole tree.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, OmegaConf

from .choices import Choice
from .errors import ConfigError
from .train_config import TrainConfig, validate_train
from .trellis2.backends import AttentionBackend, ConvBackend, Offload
from .trellis2.settings import AdapterSettings, Trellis2Settings

logger = logging.getLogger(__name__)

OVOXEL_RESOLUTIONS = (256, 512, 1024)  # TRELLIS.2's shape-VAE grids
MAX_SEED = 2**63 - 1  # seeds are integers in [0, MAX_SEED] (--seed, seed=, a manifest's seed column)
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


# ----------------------------------------------------------------------------------- choices
class Mode(Choice):
    """How the back view reaches TRELLIS.2 (README "Modes")."""

    auto = "auto"  # know3d with adapter weights, else multiview
    know3d = "know3d"  # editor hidden states through the Know3D adapter
    multiview = "multiview"  # the finished back view as a second conditioning image
    trellis = "trellis"  # plain TRELLIS.2 on the front image


class Preview(Choice):
    """What `back.png` shows."""

    x0 = "x0"  # the editor's x0 estimate at the tap step (free)
    full = "full"  # the finished edit
    none = "none"  # no back.png


class Background(Choice):
    """How the input's foreground mask is found."""

    auto = "auto"  # alpha if present, else BiRefNet when its weights are on disk, else threshold (checked)
    alpha = "alpha"
    threshold = "threshold"
    birefnet = "birefnet"


class EditorPipelineKind(Choice):
    """Which diffusers pipeline class drives the editor."""

    plus = "plus"  # QwenImageEditPlusPipeline (2509 / 2511)
    edit = "edit"  # QwenImageEditPipeline (the original release)


class TapTokens(Choice):
    """Which image-stream tokens the tap keeps."""

    target = "target"  # the generated (back-view) tokens
    all = "all"  # target tokens, then the condition images' tokens


class ExportFormat(Choice):
    glb = "glb"
    obj = "obj"
    ply = "ply"


class TextureFormat(Choice):
    webp = "webp"
    png = "png"


class ExportOrigin(Choice):
    """Where the exported asset's pivot is (`export.origin`)."""

    base = "base"  # stands on y = 0, centred in x and z
    center = "center"  # bounding-box centre at the origin


class AlphaMode(Choice):
    """glTF `alphaMode`."""

    OPAQUE = "OPAQUE"
    BLEND = "BLEND"
    MASK = "MASK"


class RuntimeDtype(Choice):
    """Compute dtype of the big networks (`auto`: bfloat16 on CUDA, float32 on CPU)."""

    auto = "auto"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


class EngineName(Choice):
    """Where `know3d batch` runs its items."""

    local = "local"  # this process, one item after another
    ray = "ray"  # actors on a Ray cluster (`ray` extra), one per GPU


class Shading(Choice):
    """How dataset views are lit (`data.views.shading`)."""

    lit = "lit"  # PBR base colour under a key and ambient light
    flat = "flat"  # unlit base colour


class TextSource(Choice):
    """Where `know3d data build` takes a sample's back parts from (`data.text.source`)."""

    auto = "auto"  # the CSV caption cell, else Qwen2.5-VL on the front and back renders
    caption = "caption"  # the CSV caption cell only
    none = "none"  # no back parts: every prompt variant is P_view alone


class DataLatents(Choice):
    """Which latents `know3d data build` encodes (`data.latents`)."""

    all = "all"  # SS, shape and texture latents (every train stage)
    ss = "ss"  # the SS latent only (train=ss, train.trainable=ss_vae): no shape/texture encoders, O-Voxel may be 256


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
    background: Background = Background.auto  # auto | alpha | threshold | birefnet
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
    pipeline: EditorPipelineKind = EditorPipelineKind.plus  # plus (Qwen-Image-Edit 2509/2511) | edit (original)
    steps: int = 40  # denoising steps of the full schedule
    true_cfg_scale: float = 4.0  # true classifier-free guidance scale (1 disables CFG)
    negative_prompt: str = " "  # negative prompt for true CFG
    resolution: int = 1024  # output side length in pixels (square)
    condition_area: Optional[int] = None  # VAE condition image area in pixels (>= 1024); null = pipeline default
    lora: Optional[str] = None  # LoRA file or repo to load into the transformer
    lora_weight: float = 1.0  # LoRA scale


@dataclass
class TapConfig:
    block: int = 30  # MMDiT block whose image-stream output is tapped
    step_frac: float = 0.25  # tap at step index round(step_frac * steps)
    tokens: TapTokens = TapTokens.target  # target (back-view tokens only) | all (target + condition tokens)


@dataclass
class AdapterConfig(AdapterSettings):
    """The library's adapter settings plus where the adapter files are."""

    weights: Optional[str] = None  # directory with <stage>.json + <stage>.safetensors per stage (null = none)


@dataclass
class ExportConfig:
    format: ExportFormat = ExportFormat.glb  # glb | obj | ply
    faces: int = 500_000  # target face count after decimation
    texture_size: int = 2048  # baked texture side in pixels
    texture_format: TextureFormat = TextureFormat.png  # png (every viewer) | webp (smaller; GLB needs EXT_texture_webp)
    alpha_mode: AlphaMode = AlphaMode.OPAQUE  # OPAQUE | BLEND | MASK
    double_sided: bool = True  # glTF material doubleSided
    origin: ExportOrigin = ExportOrigin.base  # base (stands on y = 0) | center (bounding-box centre at the origin)
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
    dtype: RuntimeDtype = RuntimeDtype.auto  # auto | bfloat16 | float16 | float32 (set by the precision group)
    offload: Offload = Offload.sequential  # sequential (one stage resident at a time) | none
    compile: bool = False  # torch.compile the transformer blocks
    attention: AttentionBackend = AttentionBackend.auto  # auto | sdpa | flash_attn
    sparse_conv: ConvBackend = ConvBackend.auto  # auto | torch


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
    shading: Shading = Shading.lit  # lit (PBR base colour under a key and ambient light) | flat (unlit base colour)


@dataclass
class TextConfig:
    source: TextSource = TextSource.auto  # auto (CSV caption, else Qwen2.5-VL on renders) | caption (CSV only) | none
    separator: str = ";"  # separates the back parts in a CSV caption cell


@dataclass
class PromptsConfig:
    variants: int = 4  # K: prompt variants per sample, each with its own cached H_DiT
    p_empty: float = 0.1  # probability that a variant after the first is P_view alone


@dataclass
class DataConfig:
    asset: AssetConfig = field(default_factory=AssetConfig)  # what assets are accepted
    ovoxel: OVoxelConfig = field(default_factory=OVoxelConfig)  # mesh -> O-Voxel conversion
    views: ViewsConfig = field(default_factory=ViewsConfig)  # front/back renders of each sample
    seed: int = 0  # with a sample's id, seeds its view angles, prompt variants and editor noise
    latents: DataLatents = DataLatents.all  # all (SS, shape, texture) | ss (SS only: for train=ss, O-Voxel 256 allowed)
    quantize: bool = True  # round dual vertices and PBR attributes to 8 bits before encoding (upstream's storage)
    dino_resolutions: list[int] = field(default_factory=lambda: [512, 1024])  # DINOv3 sides cached (512 required)
    group_size: int = 8  # assets taken through each model phase together (one move to the GPU per model and group)
    text: TextConfig = field(default_factory=TextConfig)  # where the back parts come from
    prompts: PromptsConfig = field(default_factory=PromptsConfig)  # the K editor prompts per sample


@dataclass
class RayEngineConfig:
    address: Optional[str] = None  # Ray cluster address; null = $RAY_ADDRESS if set, else start a local Ray
    actors: Optional[int] = None  # actors; null = one per gpus_per_actor GPUs of the cluster, cpu_actors without GPUs
    gpus_per_actor: float = 1.0  # GPUs reserved per actor (0.5 packs two actors on a card; the chain uses one device)
    cpus_per_actor: float = 1.0  # CPUs reserved per actor, and its torch threads
    cpu_actors: int = 1  # actors when the cluster has no GPUs (CPU generation)
    max_retries: int = 2  # a failed item (runtime error, lost actor) is retried on another actor up to this many times
    max_lost_actors: int = 8  # lost actors (process or node died) that are replaced; one more stops the batch


@dataclass
class EngineConfig:
    """How `know3d batch` schedules its items; never changes an asset (not in metadata.json or the resume key)."""

    name: EngineName = EngineName.local  # local | ray (`engine=ray` selects it)
    ray: RayEngineConfig = field(default_factory=RayEngineConfig)  # engine=ray settings


@dataclass
class Know3dConfig:
    mode: Mode = Mode.auto  # auto | know3d | multiview | trellis
    back: str = ""  # text about the hidden back side
    seed: Optional[int] = None  # null = random (the drawn seed is recorded)
    preview: Preview = Preview.x0  # x0 | full | none
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    mllm: MllmConfig = field(default_factory=MllmConfig)
    editor: EditorConfig = field(default_factory=EditorConfig)
    tap: TapConfig = field(default_factory=TapConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    trellis2: Trellis2Settings = field(default_factory=Trellis2Settings)
    export: ExportConfig = field(default_factory=ExportConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)  # `know3d train` (train_config.py)
    data: DataConfig = field(default_factory=DataConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)  # `know3d batch` scheduling (local | ray)


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

    _refuse_renamed_keys(overrides)
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


def override_key(override: str) -> str:
    """The dotted key a Hydra override sets: `+train.seed=1` -> `train.seed`, `~engine` -> `engine`."""
    return override.split("=", 1)[0].lstrip("+~")


RENAMED_KEYS = {"train.p_uncond_ext": "train.p_uncond_editor"}  # old key -> new key (README: Configuration)


def _refuse_renamed_keys(overrides: list[str] | tuple[str, ...]) -> None:
    """A renamed key is an error that names its new name, rather than Hydra's bare "not in struct"."""
    for override in overrides:
        key = override_key(override)
        if key in RENAMED_KEYS:
            raise ConfigError(f"{key} was renamed to {RENAMED_KEYS[key]}")


def validate(cfg: Know3dConfig) -> None:
    """Check the ranges that types alone cannot express (the schema's Enums already checked every choice)."""
    if cfg.adapter.pool not in (None, 1, 2):
        raise ConfigError(f"invalid value {cfg.adapter.pool!r} for adapter.pool; expected null, 1 or 2")
    if cfg.data.ovoxel.resolution not in OVOXEL_RESOLUTIONS:
        raise ConfigError(f"invalid value {cfg.data.ovoxel.resolution!r} for data.ovoxel.resolution; expected one of: "
                          f"{', '.join(map(str, OVOXEL_RESOLUTIONS))}")
    ranges: list[tuple[str, Any, float, float]] = [
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
        ("trellis2.max_num_tokens", cfg.trellis2.max_num_tokens, 1, 10**9),
        ("data.asset.max_faces", cfg.data.asset.max_faces, 1, 2**31 - 1),
        ("data.asset.max_texture_side", cfg.data.asset.max_texture_side, 1, 65536),
        ("data.ovoxel.chunk_size", cfg.data.ovoxel.chunk_size, 1024, 2**31 - 1),
        ("data.views.size", cfg.data.views.size, 16, 8192),
        ("data.views.fov", cfg.data.views.fov, 1.0, 170.0),
        ("preprocess.max_side", cfg.preprocess.max_side, 1, 1_000_000),
        ("preprocess.max_pixels", cfg.preprocess.max_pixels, 1, 10**12),
        ("preprocess.min_foreground", cfg.preprocess.min_foreground, 0.0, 1.0),
        ("mllm.max_new_tokens", cfg.mllm.max_new_tokens, 1, 100_000),
        ("mllm.image_side", cfg.mllm.image_side, 16, 16384),
        ("editor.true_cfg_scale", cfg.editor.true_cfg_scale, 0.0, 1000.0),
        ("data.prompts.variants", cfg.data.prompts.variants, 1, 64),
        ("data.prompts.p_empty", cfg.data.prompts.p_empty, 0.0, 1.0),
        ("data.group_size", cfg.data.group_size, 1, 100_000),
    ]
    if cfg.editor.condition_area is not None:
        ranges.append(("editor.condition_area", cfg.editor.condition_area, 32 * 32, 10**9))
    if cfg.seed is not None:
        ranges.append(("seed", cfg.seed, 0, MAX_SEED))
    for stage in ("ss", "shape", "tex"):  # null = the value from pipeline.json
        overrides = getattr(cfg.trellis2, stage)
        ranges += [(f"trellis2.{stage}.{name}", value, lo, hi) for name, value, lo, hi in (
            ("steps", overrides.steps, 1, 1000),
            ("guidance_strength", overrides.guidance_strength, 0.0, 1000.0),
            ("guidance_rescale", overrides.guidance_rescale, 0.0, 1.0),
            ("rescale_t", overrides.rescale_t, 1e-6, 1000.0),
        ) if value is not None]
    for key, value, lo, hi in ranges:
        if not lo <= value <= hi:
            raise ConfigError(f"invalid value {value!r} for {key}; expected a number in [{lo}, {hi}]")
    for key, pair in (("data.views.azimuth_range", cfg.data.views.azimuth_range),
                      ("data.views.elevation_range", cfg.data.views.elevation_range)):
        if len(pair) != 2 or pair[0] > pair[1]:
            raise ConfigError(f"invalid value {list(pair)!r} for {key}; expected [low, high] with low <= high")
    dino = cfg.data.dino_resolutions
    if 512 not in dino or not set(dino) <= {512, 1024} or len(set(dino)) != len(dino):
        raise ConfigError(f"invalid value {list(dino)!r} for data.dino_resolutions; expected [512] or [512, 1024]")
    if not cfg.data.text.separator:
        raise ConfigError("invalid value '' for data.text.separator; expected a non-empty string such as ';'")
    if not 0.0 < cfg.data.asset.min_extent < cfg.data.asset.max_extent:
        raise ConfigError("invalid data.asset extents; expected 0 < data.asset.min_extent < data.asset.max_extent")
    if cfg.export.height is not None and not 0.0 < cfg.export.height <= 1.0e6:
        raise ConfigError(f"invalid value {cfg.export.height!r} for export.height; expected null or metres in (0, 1e6]")
    if not _DEVICE.fullmatch(cfg.runtime.device):
        raise ConfigError(f"invalid value {cfg.runtime.device!r} for runtime.device; expected auto, cpu, cuda or cuda:N "
                          "(N = 0, 1, ...)")
    ray = cfg.engine.ray
    for key, value, lo in (("actors", ray.actors, 1), ("gpus_per_actor", ray.gpus_per_actor, 0),
                           ("cpus_per_actor", ray.cpus_per_actor, 0), ("cpu_actors", ray.cpu_actors, 1),
                           ("max_retries", ray.max_retries, 0), ("max_lost_actors", ray.max_lost_actors, 0)):
        if value is not None and value < lo:
            raise ConfigError(f"invalid value {value!r} for engine.ray.{key}; expected a number >= {lo}")
    validate_train(cfg.train)


def recorded_settings(cfg: Know3dConfig) -> dict[str, Any]:
    """The config as an asset records it (metadata.json, resume key): all but how a batch schedules (`engine`)."""
    settings = to_container(cfg)
    settings.pop("engine")
    return settings


def to_container(cfg: Know3dConfig) -> dict[str, Any]:
    """The config as plain JSON-ready data (for metadata.json and `config show`); choices as their string values.

    Not through OmegaConf: `cfg` is already resolved, and values are data (a back text may contain `${...}`).
    """
    return _plain(asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value.value if isinstance(value, Enum) else value


def to_yaml(cfg: Know3dConfig) -> str:
    import yaml

    return yaml.safe_dump(to_container(cfg), sort_keys=False, allow_unicode=True, default_flow_style=False)


_INVALID_CHOICE = re.compile(r"Invalid value '(?P<value>.*)', expected one of \[(?P<choices>.*)\]")


def _one_line(exc: BaseException) -> str:
    """Hydra/OmegaConf errors span several lines; keep what names the key and the problem."""
    choice = _invalid_choice(exc)
    if choice is not None:
        return choice
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


def _invalid_choice(exc: BaseException) -> str | None:
    """OmegaConf's message for a value outside an Enum, reworded to name the full key and every allowed value."""
    cause: BaseException | None = exc
    while cause is not None:
        match = _INVALID_CHOICE.match(str(getattr(cause, "msg", "") or ""))
        key = getattr(cause, "full_key", None)
        if match and key:
            return f"invalid value {match['value']!r} for {key}; expected one of: {match['choices']}"
        cause = cause.__cause__
    return None


__all__ = [
    "MAX_SEED", "AdapterConfig", "AlphaMode", "AssetConfig", "Background", "DataConfig", "EditorConfig",
    "DataLatents", "EditorPipelineKind", "EngineConfig", "EngineName", "ExportConfig", "ExportFormat", "ExportOrigin", "Know3dConfig",
    "MllmConfig", "Mode", "ModelSpec", "ModelsConfig", "OVoxelConfig", "PreprocessConfig", "Preview", "PromptsConfig",
    "RayEngineConfig", "RuntimeConfig", "RuntimeDtype", "Shading", "TapConfig", "TapTokens", "TextConfig", "TextSource",
    "TextureFormat", "ViewsConfig", "config_dir", "load_config", "override_key", "recorded_settings", "to_container",
    "to_yaml", "validate",
]
