"""Where model files live: a configured local directory, or a pinned snapshot in the Hugging Face cache.

Generation never downloads unless `models.allow_download=true`; a missing model is exit 3 with the exact
command that fetches it. `HF_HUB_OFFLINE` is honoured (huggingface_hub reads it).
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .config import Background, Know3dConfig, Mode, ModelSpec
from .errors import Know3dError, ModelMissingError

logger = logging.getLogger(__name__)

MODEL_NAMES = ("editor", "mllm", "dinov3", "trellis2", "ss_decoder", "birefnet", "trellis2_encoders", "ss_encoder")
# Only `know3d data build` needs the encoders (latents of 3D assets); `needed_models` (generate) never lists them.
ENCODER_MODELS = ("trellis2_encoders", "ss_encoder")


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # config name under `models.` (editor, dinov3, ...)
    repo: str  # hub repo id
    path: Path  # directory holding the files
    revision: str | None  # commit of the snapshot, when it came from the hub cache


def needed_models(cfg: Know3dConfig) -> list[str]:
    """The models the configured run touches, in the order the chain uses them."""
    names = []
    if cfg.preprocess.background == Background.birefnet:
        names.append("birefnet")
    if cfg.mllm.expand:
        names.append("mllm")
    if cfg.mode != Mode.trellis:
        names.append("editor")
    names += ["dinov3", "trellis2", "ss_decoder"]
    return names


def spec_of(cfg: Know3dConfig, name: str) -> ModelSpec:
    if name not in MODEL_NAMES:
        raise ModelMissingError(f"unknown model name {name!r}; expected one of: {', '.join(MODEL_NAMES)}")
    return getattr(cfg.models, name)


def pull_command(name: str) -> str:
    return f"know3d models pull {name}"


def resolve(cfg: Know3dConfig, name: str, *, download: bool | None = None) -> ResolvedModel:
    """Find model `name` on disk, downloading it only when `download` (default: `models.allow_download`) is true."""
    spec = spec_of(cfg, name)
    if spec.path:
        path = Path(spec.path).expanduser()
        if not path.is_dir():
            hint = "run `know3d demo` once to create the tiny models" if "tiny" in spec.repo else (
                f"fix models.{name}.path, or unset it and run `{pull_command(name)}`")
            raise ModelMissingError(f"model {name} not found at {path}; {hint}")
        return ResolvedModel(name, spec.repo, path, None)
    try:
        path = _snapshot(name, spec, cfg.models.cache_dir, local_only=True)
    except ModelMissingError:
        if not (cfg.models.allow_download if download is None else download):
            raise
        path = _snapshot(name, spec, cfg.models.cache_dir, local_only=False)
    return ResolvedModel(name, spec.repo, path, path.name)


def resolve_local(cfg: Know3dConfig, name: str) -> Path:
    """Like `resolve`, but never downloads (for listing and checks)."""
    spec = spec_of(cfg, name)
    if spec.path:
        return resolve(cfg, name).path
    return _snapshot(name, spec, cfg.models.cache_dir, local_only=True)


def pull(cfg: Know3dConfig, name: str) -> ResolvedModel:
    """Download (or confirm) one model's files at its pinned revision."""
    spec = spec_of(cfg, name)
    if spec.path:
        return resolve(cfg, name)
    path = _snapshot(name, spec, cfg.models.cache_dir, local_only=False)
    return ResolvedModel(name, spec.repo, path, path.name)


def _snapshot(name: str, spec: ModelSpec, cache_dir: str | None, *, local_only: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        path = snapshot_download(
            repo_id=spec.repo,
            revision=spec.revision,
            allow_patterns=list(spec.files) or None,
            cache_dir=cache_dir,
            local_files_only=local_only,
        )
    except GatedRepoError as exc:
        raise ModelMissingError(
            f"{spec.repo} is gated: accept its licence on the Hugging Face website, then `hf auth login`"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelMissingError(f"{spec.repo} was not found on the hub (check the repo id and your token)") from exc
    except LocalEntryNotFoundError as exc:
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ModelMissingError(
            f"model {spec.repo} is not downloaded{offline}; run `{pull_command(name)}` "
            f"or pass models.allow_download=true"
        ) from exc
    except (OSError, ValueError) as exc:  # network failures surface as OSError subclasses
        raise ModelMissingError(f"could not fetch {spec.repo}: {exc}") from exc
    return Path(path)


# ------------------------------------------------------------------------------------ verify
@dataclass(frozen=True)
class VerifyReport:
    name: str
    repo: str
    present: bool
    path: str | None
    files: int  # files checked
    bytes: int  # total size on disk
    problems: list[str]  # empty when everything checks out

    @property
    def ok(self) -> bool:
        return self.present and not self.problems


def verify(cfg: Know3dConfig, name: str) -> VerifyReport:
    """Check that a model is present and its files are whole (non-empty; safetensors sizes match headers)."""
    spec = spec_of(cfg, name)
    try:
        model = resolve(cfg, name)
    except Know3dError as exc:
        return VerifyReport(name, spec.repo, False, None, 0, 0, [str(exc)])
    files = [p for p in model.path.rglob("*") if p.is_file()]
    problems, total = [], 0
    if not files:
        problems.append("no files")
    for f in files:
        size = f.stat().st_size
        total += size
        if size == 0:
            problems.append(f"{f.relative_to(model.path)} is empty")
        elif f.suffix == ".safetensors":
            problem = _check_safetensors(f, size)
            if problem:
                problems.append(f"{f.relative_to(model.path)}: {problem}")
        elif f.suffix == ".json":
            try:
                json.loads(f.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                problems.append(f"{f.relative_to(model.path)}: invalid json ({exc})")
    return VerifyReport(name, spec.repo, True, str(model.path), len(files), total, problems)


def _check_safetensors(path: Path, size: int) -> str | None:
    """A safetensors file is an 8-byte header length, a json header, then the tensor data."""
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "truncated header"
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            return "header longer than the file (truncated download?)"
        try:
            header = json.loads(fh.read(n))
        except json.JSONDecodeError:
            return "corrupt header"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        return f"size {size} does not match its header ({8 + n + end} expected; truncated download?)"
    return None
