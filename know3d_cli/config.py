"""Configuration schema, composed from `configs/` with Hydra's Compose API.

Every section is a dataclass registered in Hydra's ConfigStore, so an unknown key or a value of the
wrong type fails at compose time with the full key named. The YAML files in `configs/` hold the
defaults and one-line descriptions; these classes hold the types. Stages receive only their own
section (e.g. `EditorConfig`), never the whole tree.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from enum import Enum
from typing import Any, Optional, TypeVar

from omegaconf import MISSING, OmegaConf

from .errors import ConfigError

logger = logging.getLogger(__name__)

MODES = ("auto", "know3d", "multiview", "trellis")
PREVIEWS = ("x0", "full", "none")
PIPELINE_TYPES = ("ss", "512", "1024", "1024_cascade", "1536_cascade")
MAX_SEED = 2**63 - 1  # seeds are integers in [0, MAX_SEED] (--seed, seed=, a manifest's seed column)
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


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
    texture_format: str = "webp"  # webp | png
    alpha_mode: str = "OPAQUE"  # OPAQUE | BLEND | MASK
    double_sided: bool = True  # glTF material doubleSided


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32 (set by the precision group)
    offload: str = "sequential"  # sequential (one stage resident at a time) | none
    compile: bool = False  # torch.compile the transformer blocks
    attention: str = "auto"  # auto | sdpa | flash_attn
    sparse_conv: str = "auto"  # auto | torch


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
        ("runtime.dtype", cfg.runtime.dtype, ("auto", "bfloat16", "float16", "float32")),
        ("runtime.offload", cfg.runtime.offload, ("sequential", "none")),
        ("runtime.attention", cfg.runtime.attention, ("auto", "sdpa", "flash_attn")),
        ("runtime.sparse_conv", cfg.runtime.sparse_conv, ("auto", "torch")),
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
        ("preprocess.threshold_tolerance", cfg.preprocess.threshold_tolerance, 0.0, 1.0),
        ("preprocess.alpha_cutoff", cfg.preprocess.alpha_cutoff, 0.0, 1.0),
    ]
    ranges += [
        ("preprocess.max_side", cfg.preprocess.max_side, 1, 1_000_000),
        ("preprocess.max_pixels", cfg.preprocess.max_pixels, 1, 10**12),
        ("preprocess.min_foreground", cfg.preprocess.min_foreground, 0.0, 1.0),
        ("mllm.max_new_tokens", cfg.mllm.max_new_tokens, 1, 100_000),
        ("mllm.image_side", cfg.mllm.image_side, 16, 16384),
        ("editor.true_cfg_scale", cfg.editor.true_cfg_scale, 0.0, 1000.0),
        ("trellis2.max_num_tokens", cfg.trellis2.max_num_tokens, 1, 10**9),
    ]
    if cfg.editor.condition_area is not None:
        ranges.append(("editor.condition_area", cfg.editor.condition_area, 256, 10**9))
    if cfg.seed is not None:
        ranges.append(("seed", cfg.seed, 0, MAX_SEED))
    for stage in ("ss", "shape", "tex"):  # null = the value from pipeline.json
        sampler: SamplerConfig = getattr(cfg.trellis2, stage)
        for name, lo, hi in (("steps", 1, 1000), ("guidance_strength", 0.0, 1000.0), ("guidance_rescale", 0.0, 1.0),
                             ("rescale_t", 1e-6, 1000.0)):
            if getattr(sampler, name) is not None:
                ranges.append((f"trellis2.{stage}.{name}", getattr(sampler, name), lo, hi))
    for key, value, lo, hi in ranges:
        if not lo <= value <= hi:
            raise ConfigError(f"invalid value {value!r} for {key}; expected a number in [{lo}, {hi}]")
    if not _DEVICE.fullmatch(cfg.runtime.device):
        raise ConfigError(f"invalid value {cfg.runtime.device!r} for runtime.device; expected auto, cpu, cuda or cuda:N "
                          "(N = 0, 1, ...)")


E = TypeVar("E", bound=Enum)


def parse_choice(choices: type[E], value: E | str, key: str) -> E:
    """`choices(value)` for an Enum of config strings; an unknown value is a `ConfigError` listing the choices."""
    try:
        return choices(value)
    except ValueError:
        allowed = ", ".join(str(c.value) for c in choices)
        raise ConfigError(f"invalid value {value!r} for {key}; expected one of: {allowed}") from None


def to_container(cfg: Know3dConfig) -> dict[str, Any]:
    """The config as plain JSON-ready data (for metadata.json and `config show`).

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
    "AdapterConfig", "EditorConfig", "ExportConfig", "Know3dConfig", "MllmConfig", "ModelSpec",
    "ModelsConfig", "PreprocessConfig", "RuntimeConfig", "SamplerConfig", "TapConfig", "Trellis2Config",
    "MAX_SEED", "config_dir", "load_config", "parse_choice", "to_container", "to_yaml", "validate",
]
