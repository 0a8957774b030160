"""`pipeline.json` of TRELLIS.2-4B: which checkpoint plays which role, sampler settings, latent normalisation.

The file is `{"name": "Trellis2ImageTo3DPipeline", "args": {...}}` with `args.models` (role -> checkpoint path
without extension), three `{"name", "args": {"sigma_min"}, "params": {...}}` sampler entries, two `{"mean", "std"}`
normalisations, `image_cond_model` / `rembg_model` (`{"name", "args": {"model_name"}}`) and
`default_pipeline_type`. Checkpoint paths are `ckpts/<name>` inside the TRELLIS.2 folder, except the sparse-structure
decoder, `microsoft/TRELLIS-image-large/ckpts/<name>`, which lives in the separately downloaded TRELLIS-image-large
folder (`resolve_checkpoint`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from ..errors import CheckpointError, ModelMissingError
from .checkpoint import read_json_object
from .sampler import SamplerSettings
from .settings import PIPELINE_PLANS, PipelineType

logger = logging.getLogger(__name__)

PIPELINE_JSON = "pipeline.json"
PIPELINE_NAME = "Trellis2ImageTo3DPipeline"
SAMPLER_NAME = "FlowEulerGuidanceIntervalSampler"
SS_DECODER_REPO = "microsoft/TRELLIS-image-large"  # where the sparse-structure decoder comes from

MODEL_KEYS = (
    "sparse_structure_flow_model",
    "sparse_structure_decoder",
    "shape_slat_flow_model_512",
    "shape_slat_flow_model_1024",
    "shape_slat_decoder",
    "tex_slat_flow_model_512",
    "tex_slat_flow_model_1024",
    "tex_slat_decoder",
)
SAMPLER_KEYS = ("sparse_structure_sampler", "shape_slat_sampler", "tex_slat_sampler")
NORMALIZATION_KEYS = ("shape_slat_normalization", "tex_slat_normalization")


@dataclass(frozen=True)
class NormalizationSpec:
    """Per-channel statistics of a structured latent: the flow works on `(z - mean) / std`."""

    mean: tuple[float, ...]  # (C,)
    std: tuple[float, ...]  # (C,), all > 0

    @property
    def channels(self) -> int:
        return len(self.mean)


@dataclass(frozen=True)
class PipelineSpec:
    """The parsed `pipeline.json`."""

    models: Mapping[str, str]  # role (MODEL_KEYS) -> checkpoint path without extension, as written in the file
    sparse_structure_sampler: SamplerSettings  # stage 1
    shape_slat_sampler: SamplerSettings  # stage 2
    tex_slat_sampler: SamplerSettings  # stage 3
    shape_slat_normalization: NormalizationSpec  # (32,) mean / std of the shape latent
    tex_slat_normalization: NormalizationSpec  # (32,) mean / std of the texture latent
    default_pipeline_type: PipelineType  # a textured one ("1024_cascade" in the release)
    image_cond_model: str  # DINOv3 model id ("facebook/dinov3-vitl16-pretrain-lvd1689m")
    rembg_model: str  # background-removal model id ("briaai/RMBG-2.0")
    source: Path  # the file it was read from, for messages

    def checkpoint(self, role: str, trellis_dir: Path, ss_decoder_dir: Path | None) -> Path:
        """Checkpoint path (without extension) of `role`, resolved with `resolve_checkpoint`."""
        if role not in self.models:
            raise CheckpointError(f"{self.source}: args.models has no {role!r} entry")
        return resolve_checkpoint(self.models[role], trellis_dir, ss_decoder_dir)


def resolve_checkpoint(spec_path: str, trellis_dir: Path, ss_decoder_dir: Path | None) -> Path:
    """Where a `pipeline.json` checkpoint path lives on disk (returned without extension).

    `ckpts/<name>` is relative to the TRELLIS.2 folder. `microsoft/TRELLIS-image-large/<rest>` is `<rest>` inside
    `ss_decoder_dir` (the separately downloaded TRELLIS-image-large folder), unless a copy sits at that same relative
    path inside the TRELLIS.2 folder. An absolute path is used as it is.
    """
    trellis_dir = Path(trellis_dir)
    path = PurePosixPath(spec_path)
    if path.is_absolute():
        return Path(spec_path)
    local = trellis_dir / path
    if Path(f"{local}.json").is_file():
        return local
    parts = path.parts
    if len(parts) >= 3 and "/".join(parts[:2]) == SS_DECODER_REPO:
        if ss_decoder_dir is None:
            raise ModelMissingError(
                f"checkpoint {spec_path} comes from {SS_DECODER_REPO}, but no folder for it was given "
                f"(models.ss_decoder)"
            )
        return Path(ss_decoder_dir).joinpath(*parts[2:])
    return local


def read_pipeline_json(model_dir: Path) -> PipelineSpec:
    """Parse `model_dir/pipeline.json`. Missing file -> `ModelMissingError`; a malformed or incomplete file ->
    `CheckpointError` naming the key."""
    path = Path(model_dir) / PIPELINE_JSON
    data = read_json_object(path, f"{path} not found; is {model_dir} a TRELLIS.2 model folder?")
    return parse_pipeline_spec(data, path)


def parse_pipeline_spec(data: Mapping[str, Any], path: Path) -> PipelineSpec:
    """The `PipelineSpec` of a `pipeline.json` object (`path` names it in messages): the one parser of TRELLIS.2
    sampler settings, latent normalisations and checkpoint roles. Malformed or incomplete -> `CheckpointError`."""
    reader = _Reader(path)
    name = data.get("name")
    if name != PIPELINE_NAME:
        logger.warning("%s names pipeline %r, expected %r; reading it anyway", path, name, PIPELINE_NAME)
    args = reader.mapping(data, "args", "")

    models_raw = reader.mapping(args, "models", "args")
    models = {}
    for key in MODEL_KEYS:
        models[key] = reader.string(models_raw, key, "args.models")
    for key, value in models_raw.items():  # keep extra roles (other variants), still validated
        if key not in models:
            models[key] = reader.string(models_raw, key, "args.models")

    samplers = {key: _read_sampler(reader, reader.mapping(args, key, "args"), f"args.{key}") for key in SAMPLER_KEYS}
    norms = {key: _read_normalization(reader, reader.mapping(args, key, "args"), f"args.{key}")
             for key in NORMALIZATION_KEYS}

    pipeline_type = reader.string(args, "default_pipeline_type", "args")
    textured = [str(kind) for kind, plan in PIPELINE_PLANS.items() if plan.textured]
    if pipeline_type not in textured:
        raise CheckpointError(
            f"{path}: args.default_pipeline_type={pipeline_type!r}; expected one of {', '.join(textured)}"
        )
    return PipelineSpec(
        models=MappingProxyType(models),
        sparse_structure_sampler=samplers["sparse_structure_sampler"],
        shape_slat_sampler=samplers["shape_slat_sampler"],
        tex_slat_sampler=samplers["tex_slat_sampler"],
        shape_slat_normalization=norms["shape_slat_normalization"],
        tex_slat_normalization=norms["tex_slat_normalization"],
        default_pipeline_type=PipelineType(pipeline_type),
        image_cond_model=_read_model_id(reader, args, "image_cond_model"),
        rembg_model=_read_model_id(reader, args, "rembg_model"),
        source=path,
    )


class _Reader:
    """Typed access to json values; every failure is a `CheckpointError` naming the file and the dotted key."""

    def __init__(self, path: Path):
        self.path = path

    def _get(self, obj: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            raise CheckpointError(f"{self.path}: missing key {_dotted(where, key)}")
        return obj[key]

    def fail(self, where: str, key: str, expected: str, value: Any) -> CheckpointError:
        return CheckpointError(f"{self.path}: {_dotted(where, key)} must be {expected}, got {value!r}")

    def mapping(self, obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        value = self._get(obj, key, where)
        if not isinstance(value, dict):
            raise self.fail(where, key, "an object", type(value).__name__)
        return value

    def string(self, obj: Mapping[str, Any], key: str, where: str) -> str:
        value = self._get(obj, key, where)
        if not isinstance(value, str) or not value:
            raise self.fail(where, key, "a non-empty string", value)
        return value

    def number(self, obj: Mapping[str, Any], key: str, where: str) -> float:
        value = self._get(obj, key, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(where, key, "a number", value)
        return float(value)

    def integer(self, obj: Mapping[str, Any], key: str, where: str) -> int:
        value = self._get(obj, key, where)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, key, "an integer", value)
        return value

    def numbers(self, obj: Mapping[str, Any], key: str, where: str, length: int | None = None) -> tuple[float, ...]:
        value = self._get(obj, key, where)
        ok = isinstance(value, list) and all(
            not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) for v in value
        )
        if not ok or (length is not None and len(value) != length) or not value:
            expected = f"a list of {length} numbers" if length is not None else "a non-empty list of numbers"
            raise self.fail(where, key, expected, value)
        return tuple(float(v) for v in value)


def _dotted(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _read_sampler(reader: _Reader, entry: Mapping[str, Any], where: str) -> SamplerSettings:
    name = reader.string(entry, "name", where)
    if name != SAMPLER_NAME:
        raise reader.fail(where, "name", repr(SAMPLER_NAME), name)
    args = reader.mapping(entry, "args", where)
    params = reader.mapping(entry, "params", where)
    p = f"{where}.params"
    steps = reader.integer(params, "steps", p)
    if steps < 1:
        raise reader.fail(p, "steps", ">= 1", steps)
    lo, hi = reader.numbers(params, "guidance_interval", p, length=2)
    if not 0.0 <= lo <= hi <= 1.0:
        raise reader.fail(p, "guidance_interval", "[lo, hi] with 0 <= lo <= hi <= 1", [lo, hi])
    rescale_t = reader.number(params, "rescale_t", p)
    if rescale_t <= 0:
        raise reader.fail(p, "rescale_t", "> 0", rescale_t)
    sigma_min = reader.number(args, "sigma_min", f"{where}.args")
    if not 0.0 <= sigma_min < 1.0:
        raise reader.fail(f"{where}.args", "sigma_min", "in [0, 1)", sigma_min)
    known = {"steps", "guidance_strength", "guidance_rescale", "guidance_interval", "rescale_t"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise CheckpointError(f"{reader.path}: unknown key(s) {unknown} in {p}")
    return SamplerSettings(
        steps=steps,
        guidance_strength=reader.number(params, "guidance_strength", p),
        guidance_rescale=reader.number(params, "guidance_rescale", p),
        guidance_interval=(lo, hi),
        rescale_t=rescale_t,
        sigma_min=sigma_min,
    )


def _read_normalization(reader: _Reader, entry: Mapping[str, Any], where: str) -> NormalizationSpec:
    mean = reader.numbers(entry, "mean", where)
    std = reader.numbers(entry, "std", where, length=len(mean))
    if min(std) <= 0:
        raise reader.fail(where, "std", "all > 0", list(std))
    return NormalizationSpec(mean, std)


def _read_model_id(reader: _Reader, args: Mapping[str, Any], key: str) -> str:
    entry = reader.mapping(args, key, "args")
    return reader.string(reader.mapping(entry, "args", f"args.{key}"), "model_name", f"args.{key}.args")


__all__ = [
    "MODEL_KEYS",
    "NORMALIZATION_KEYS",
    "PIPELINE_JSON",
    "PIPELINE_NAME",
    "SAMPLER_KEYS",
    "SAMPLER_NAME",
    "SS_DECODER_REPO",
    "NormalizationSpec",
    "PipelineSpec",
    "parse_pipeline_spec",
    "read_pipeline_json",
    "resolve_checkpoint",
]
