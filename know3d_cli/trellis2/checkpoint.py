"""Build TRELLIS.2 networks from their released checkpoint files, strictly, and write files in the same layout.

A checkpoint is a pair `<name>.json` (`{"name": <class>, "args": {...}}`) + `<name>.safetensors`. The class comes
from an explicit registry; the json `args` are its keyword arguments, named exactly like the json keys. The network
is built on the `meta` device (no random init of a multi-GB model), the precision policy is applied to the empty
parameters, and every tensor is read once, straight into its final dtype and device, then assigned with
`load_state_dict(strict=True, assign=True)`. Keys and shapes are checked against the file header first, so a wrong
file fails before anything large is read. Computed buffers (`rope_phases`) are not in the files; models that have
them rebuild them in `init_buffers(device)`.

A Know3D adapter directory holds one pair per adapted TRELLIS.2 stage, `<stage>.json` + `<stage>.safetensors`
(`ss`, `shape`, `tex`; the shape adapter serves both shape flows), each loaded strictly on its own.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, Know3dError, ModelMissingError
from .settings import AdapterStage

logger = logging.getLogger(__name__)

_SHOWN = 5  # keys listed in a mismatch message
Writer = Callable[[Path, bytes], object]  # write(path, data): how checkpoint files reach the disk

# safetensors header dtype names -> torch dtypes (the ones TRELLIS.2 files use, plus the usual others)
_FILE_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def model_classes() -> dict[str, type[nn.Module]]:
    """The registry: released checkpoint class name -> our module."""
    from .models.flexi_dual_grid_vae_decoder import FlexiDualGridVaeDecoder
    from .models.flexi_dual_grid_vae_encoder import FlexiDualGridVaeEncoder
    from .models.sparse_structure_decoder import SparseStructureDecoder
    from .models.sparse_structure_encoder import SparseStructureEncoder
    from .models.sparse_structure_flow import SparseStructureFlowModel
    from .models.sparse_unet_vae_decoder import SparseUnetVaeDecoder
    from .models.sparse_unet_vae_encoder import SparseUnetVaeEncoder
    from .models.structured_latent_flow import SLatFlowModel

    return {
        "SparseStructureFlowModel": SparseStructureFlowModel,
        "SLatFlowModel": SLatFlowModel,
        "SparseStructureDecoder": SparseStructureDecoder,
        "FlexiDualGridVaeDecoder": FlexiDualGridVaeDecoder,
        "SparseUnetVaeDecoder": SparseUnetVaeDecoder,
        "SparseStructureEncoder": SparseStructureEncoder,
        "FlexiDualGridVaeEncoder": FlexiDualGridVaeEncoder,
        "SparseUnetVaeEncoder": SparseUnetVaeEncoder,
    }


def adapter_classes() -> dict[str, type[nn.Module]]:
    from .models.know3d_adapter import Know3dAdapter

    return {"Know3dAdapter": Know3dAdapter}


@dataclass(frozen=True)
class CheckpointConfig:
    """The parsed `<name>.json` of a checkpoint."""

    name: str  # class name, a key of the registry
    args: dict[str, Any]  # constructor keyword arguments
    path: Path  # the json file, for messages


def json_path(stem: Path) -> Path:
    return Path(f"{stem}.json")


def weights_path(stem: Path) -> Path:
    return Path(f"{stem}.safetensors")


def read_json_object(path: Path, missing: str) -> dict[str, Any]:
    """A model folder's JSON file as a dict. Missing -> `ModelMissingError(missing)`; not a JSON object ->
    `CheckpointError`."""
    if not path.is_file():
        raise ModelMissingError(missing)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def read_checkpoint_json(stem: Path) -> CheckpointConfig:
    """Read `<stem>.json`. Missing file -> `ModelMissingError`; malformed -> `CheckpointError`."""
    path = json_path(Path(stem))
    data = read_json_object(path, f"checkpoint config {path} not found")
    if not isinstance(data.get("name"), str):
        raise CheckpointError(f"{path}: expected an object with a string 'name' (the network class)")
    args = data.get("args", {})
    if not isinstance(args, dict):
        raise CheckpointError(f"{path}: 'args' must be an object, got {type(args).__name__}")
    return CheckpointConfig(data["name"], args, path)


def build_model(config: CheckpointConfig, classes: Mapping[str, type[nn.Module]] | None = None) -> nn.Module:
    """`cls(**args)` of the registered class, on the current default device (callers use `meta`).

    Unknown class, missing or unexpected argument, or an argument value the class rejects -> `CheckpointError`
    naming the json file and the class or key.
    """
    classes = model_classes() if classes is None else classes
    cls = classes.get(config.name)
    if cls is None:
        raise CheckpointError(
            f"{config.path}: unknown network class {config.name!r}; known: {', '.join(sorted(classes))}"
        )
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(config.args) - set(params))
        if unknown:
            raise CheckpointError(f"{config.path}: unexpected argument(s) {unknown} for {config.name}")
    missing = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name not in config.args
    ]
    if missing:
        raise CheckpointError(f"{config.path}: missing argument(s) {missing} for {config.name}")
    try:
        return cls(**config.args)
    except (TypeError, ValueError, Know3dError) as exc:
        raise CheckpointError(f"{config.path}: cannot build {config.name} from its args: {exc}") from exc


# ------------------------------------------------------------------------------------------------- loading
class Precision(Enum):
    """How a network's parameters are stored for inference."""

    reference = "reference"  # the reference mixed precision (spec 2.2), meant for GPUs
    fp32 = "fp32"  # every parameter in fp32 (exact; the CPU default)


def load_model(
    stem: Path, *, device: torch.device | str = "cpu", precision: Precision = Precision.reference
) -> nn.Module:
    """Build and load one released (or tiny) checkpoint strictly.

    Args:
        stem: checkpoint path without extension (`.../ckpts/ss_flow_img_dit_1_3B_64_bf16`).
        device: where the parameters are created.
        precision: `reference` = the reference mixed precision (spec 2.2: DiT block Linears in the json `dtype`,
            decoder block convs in fp16 when `use_fp16`, everything else fp32; meant for GPUs), or `fp32`.

    Returns:
        The network in eval mode.

    Raises:
        ModelMissingError: the json or safetensors file is missing.
        CheckpointError: unknown class, bad args, or keys/shapes that differ from the network.
    """
    return _load(Path(stem), model_classes(), device, lambda model, config, header: _apply_precision(
        model, config, header, precision))


def adapter_stem(directory: Path, stage: AdapterStage) -> Path:
    """`directory/<stage>`: the adapter pair of one TRELLIS.2 stage, without extension."""
    return Path(directory) / stage.value


def load_adapter(
    directory: Path, stage: AdapterStage, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Module:
    """Load `directory/<stage>.{json,safetensors}` strictly.

    `dtype` is the dtype of the adapter's attention Linears (that of the flow model blocks it plugs into); the
    projector, norms and gammas stay fp32 (`Know3dAdapter.apply_precision_policy`).
    """
    stem = adapter_stem(Path(directory), stage)
    if not stem.parent.is_dir():
        raise ModelMissingError(f"adapter directory {stem.parent} not found")

    def policy(model: nn.Module, config: CheckpointConfig, header: Mapping[str, _Stored]) -> None:
        model.apply_precision_policy(dtype)

    return _load(stem, adapter_classes(), device, policy)


@dataclass(frozen=True)
class _Stored:
    dtype: str  # safetensors dtype name (F16, BF16, F32, ...)
    shape: tuple[int, ...]


def _read_header(path: Path) -> dict[str, _Stored]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {
                key: _Stored(f.get_slice(key).get_dtype(), tuple(f.get_slice(key).get_shape())) for key in f.keys()
            }
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError subclasses
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc


def _check_keys(path: Path, expected: Mapping[str, torch.Tensor], stored: Mapping[str, _Stored]) -> None:
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    mismatched = [
        f"{k}: file {list(stored[k].shape)} vs network {list(expected[k].shape)}"
        for k in expected
        if k in stored and tuple(expected[k].shape) != stored[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {missing[:_SHOWN]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:_SHOWN]}")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatch(es): {'; '.join(mismatched[:_SHOWN])}")
    raise CheckpointError(f"{path} does not match the network: {'; '.join(parts)}")


def _load(
    stem: Path,
    classes: Mapping[str, type[nn.Module]],
    device: torch.device | str,
    policy: Callable[[nn.Module, CheckpointConfig, Mapping[str, _Stored]], None],
) -> nn.Module:
    from safetensors import safe_open

    device = torch.device(device)
    config = read_checkpoint_json(stem)
    weights = weights_path(stem)
    if not weights.is_file():
        raise ModelMissingError(f"checkpoint weights {weights} not found (next to {config.path.name})")
    stored = _read_header(weights)
    with torch.device("meta"):
        model = build_model(config, classes)
        expected = model.state_dict()
        _check_keys(weights, expected, stored)
        policy(model, config, stored)
        targets = {key: tensor.dtype for key, tensor in model.state_dict().items()}

    state = {}
    with safe_open(str(weights), framework="pt") as f:
        for key, dtype in targets.items():
            # Move first, then cast: bf16 -> fp32 on the GPU rather than on the CPU.
            state[key] = f.get_tensor(key).to(device).to(dtype)
    model.load_state_dict(state, strict=True, assign=True)
    del state
    _materialise_buffers(model, device, config)
    logger.debug("loaded %s (%s) on %s", weights, config.name, device)
    return model.eval()


def _materialise_buffers(model: nn.Module, device: torch.device, config: CheckpointConfig) -> None:
    """Computed (non-persistent) buffers are still on `meta` after an `assign` load: let the model rebuild them."""
    if any(buf.is_meta for buf in model.buffers()) and hasattr(model, "init_buffers"):
        model.init_buffers(device)
    left = [name for name, buf in model.named_buffers() if buf.is_meta]
    if left:
        raise CheckpointError(
            f"{config.path}: {config.name} has computed buffers {left[:_SHOWN]} that it cannot rebuild after "
            f"loading (it needs an `init_buffers(device)` method)"
        )


def _apply_precision(
    model: nn.Module, config: CheckpointConfig, stored: Mapping[str, _Stored], precision: Precision
) -> None:
    """Set parameter dtypes (on the still-empty model) per the requested policy."""
    if hasattr(model, "apply_precision_policy"):  # flow transformers
        dtype = torch.float32
        if precision is Precision.reference:
            dtype = model.reference_dtype
            if "dtype" not in config.args:
                dtype = _stored_blocks_dtype(stored, default=dtype)
                logger.info("%s has no 'dtype' arg; using the stored block dtype %s", config.path.name, dtype)
        model.apply_precision_policy(dtype)
    elif hasattr(model, "convert_to_fp16"):  # SC-VAE and sparse-structure decoders
        model.float()
        if precision is Precision.reference and getattr(model, "use_fp16", False):
            model.convert_to_fp16()
    else:
        raise CheckpointError(f"{config.name} exposes no precision policy (apply_precision_policy / convert_to_fp16)")


def _stored_blocks_dtype(stored: Mapping[str, _Stored], default: torch.dtype) -> torch.dtype:
    """Most common floating dtype of the `blocks.*` weights in the file (the reference's block dtype)."""
    counts = Counter(s.dtype for key, s in stored.items() if key.startswith("blocks.") and key.endswith(".weight"))
    for name, _ in counts.most_common():
        dtype = _FILE_DTYPES.get(name)
        if dtype is not None and dtype.is_floating_point:
            return dtype
    return default


# ------------------------------------------------------------------------------------------------- saving
def write_file(path: Path, data: bytes) -> None:
    """The default `Writer`: create the folder, write the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def save_checkpoint(
    model: nn.Module,
    stem: Path,
    name: str,
    args: Mapping[str, Any],
    dtype: torch.dtype | None = None,
    write: Writer = write_file,
) -> Path:
    """Write `<stem>.safetensors` (the state_dict), then `<stem>.json` (`{"name", "args"}`).

    The json goes last, so an interrupted save leaves a checkpoint that is missing rather than torn; pass an atomic
    `write` (the app's `io.atomic_write`) to never leave a partial file at all.

    Args:
        model: the network; its persistent state_dict is saved.
        stem: path without extension.
        name: class name recorded in the json (a registry key).
        args: the constructor arguments recorded in the json (must rebuild `model`).
        dtype: cast every floating tensor to this dtype (the released DiTs are all bf16, the SC-VAE decoders all
            fp16); None keeps each tensor's own dtype (the sparse-structure decoder's fp16/fp32 mix).
        write: `write(path, data)` for each file.

    Returns:
        `stem`.
    """
    from safetensors.torch import save

    stem = Path(stem)
    tensors = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[key] = tensor.contiguous()
    write(weights_path(stem), save(tensors))
    write(json_path(stem), (json.dumps({"name": name, "args": dict(args)}, indent=4) + "\n").encode())
    logger.debug("wrote checkpoint %s (%s, %d tensors)", stem, name, len(tensors))
    return stem


def save_adapter(
    adapter: nn.Module,
    directory: Path,
    stage: AdapterStage,
    dtype: torch.dtype | None = None,
    write: Writer = write_file,
) -> Path:
    """Write `directory/<stage>.{json,safetensors}`, json args = `adapter.config()`. Returns `directory`."""
    directory = Path(directory)
    save_checkpoint(adapter, adapter_stem(directory, stage), type(adapter).__name__, adapter.config(), dtype=dtype,
                    write=write)
    return directory


__all__ = [
    "CheckpointConfig",
    "Precision",
    "adapter_classes",
    "adapter_stem",
    "build_model",
    "load_adapter",
    "load_model",
    "model_classes",
    "read_checkpoint_json",
    "read_json_object",
    "save_adapter",
    "save_checkpoint",
    "write_file",
]
