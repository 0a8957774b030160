"""`know3d train export`: a training checkpoint -> the files inference loads.

Adapter runs give `<out>/<ss|shape>.json` + `.safetensors`, exactly what `adapter.weights` loads (strict; the
shape adapter serves both shape flows). Full-flow runs give `<out>/ckpts/<released name>.json` + `.safetensors` in
the TRELLIS.2 layout (bf16, like the release), to put in place of the released flow. The EMA weights are exported
unless `use_ema=False` (or the run kept no EMA). Sparse-structure VAE runs give `<out>/ckpts/ss_enc_conv3d_16l8_fp16.*`
and `ss_dec_conv3d_16l8_fp16.*` in the TRELLIS-image-large layout and its precision (block convs fp16 where the json
says `use_fp16`), for `models.ss_encoder.path` / `models.ss_decoder.path`. The written files are loaded back strictly
before returning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..io import atomic_write, ensure_writable_dir
from ..trellis2.checkpoint import Precision, load_adapter, load_model, model_classes
from .checkpoint import load_training_checkpoint, resolve_checkpoint
from .models import AdapterStage, Know3dAdapter, save_adapter, save_checkpoint

logger = logging.getLogger(__name__)

FLOW_PREFIX = "flow."
ADAPTER_PREFIX = "adapter."
VAE_PREFIXES = {"encoder": "encoder.", "decoder": "decoder."}


@dataclass(frozen=True)
class ExportResult:
    checkpoint: Path  # the training checkpoint read
    files: list[Path]  # files written
    weights: str  # "ema" or "raw"


def export_checkpoint(checkpoint: Path | str, out: Path, use_ema: bool = True) -> ExportResult:
    """Write the inference files of a training checkpoint (a `step-*` folder, or a run folder = its newest)."""
    path = resolve_checkpoint(str(checkpoint), Path(checkpoint))
    state = load_training_checkpoint(path)
    weights, tensors = ("ema", state.ema) if use_ema and state.ema else ("raw", state.trainable)
    if use_ema and not state.ema:
        logger.warning("%s has no EMA (train.ema.rate=0); exporting the raw weights", path)
    identity = state.identity
    out = ensure_writable_dir(Path(out).expanduser())
    if identity.get("adapter") is not None:
        files = _export_adapter(identity, tensors, out)
    elif identity.get("vae") is not None:
        files = _export_vae(identity["vae"], tensors, out)
    else:
        files = _export_flow(identity, tensors, out)
    logger.info("exported %s weights of %s to %s", weights, path, out)
    return ExportResult(path, files, weights)


def _strip(tensors: dict[str, torch.Tensor], prefix: str, path_hint: str) -> dict[str, torch.Tensor]:
    stripped = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if len(stripped) != len(tensors):
        raise CheckpointError(f"{path_hint}: parameters outside '{prefix}*' in an export of that kind")
    return stripped


def _export_adapter(identity: dict, tensors: dict[str, torch.Tensor], out: Path) -> list[Path]:
    adapter = Know3dAdapter(**identity["adapter"])
    try:
        adapter.load_state_dict(_strip(tensors, ADAPTER_PREFIX, "adapter checkpoint"), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the checkpoint's adapter tensors do not fit its recorded arguments: {exc}") from exc
    try:
        stage = AdapterStage(identity["adapter_file"])
    except ValueError:
        raise CheckpointError(f"the checkpoint records an unknown adapter file {identity['adapter_file']!r}; "
                              f"expected one of: {', '.join(AdapterStage.values())}") from None
    save_adapter(adapter, out, stage, write=atomic_write)
    load_adapter(out, stage)  # strict round trip, as inference will load it
    return [out / f"{stage.value}.json", out / f"{stage.value}.safetensors"]


def _export_flow(identity: dict, tensors: dict[str, torch.Tensor], out: Path) -> list[Path]:
    flow_info = identity["flow"]
    flow = _rebuilt(flow_info, _strip(tensors, FLOW_PREFIX, "flow checkpoint"), "flow")
    stem = out / "ckpts" / flow_info["name"]
    args = {**flow_info["args"], "dtype": "bfloat16"}
    save_checkpoint(flow, stem, flow_info["class"], args, dtype=torch.bfloat16, write=atomic_write)
    load_model(stem, precision=Precision.fp32)  # strict round trip
    return [Path(f"{stem}.json"), Path(f"{stem}.safetensors")]


def _export_vae(vae: dict, tensors: dict[str, torch.Tensor], out: Path) -> list[Path]:
    files = []
    for part, prefix in VAE_PREFIXES.items():
        info = vae[part]
        weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        network = _rebuilt(info, weights, f"SS {part}")
        if info["args"].get("use_fp16"):
            network.convert_to_fp16()  # the released storage: block convs fp16, the rest fp32
        stem = out / "ckpts" / info["name"]
        save_checkpoint(network, stem, info["class"], info["args"], write=atomic_write)
        load_model(stem, precision=Precision.fp32)  # strict round trip
        files += [Path(f"{stem}.json"), Path(f"{stem}.safetensors")]
    return files


def _rebuilt(info: dict, weights: dict[str, torch.Tensor], what: str) -> torch.nn.Module:
    """The network `info` records ({"class", "args"}) holding `weights` (strict)."""
    with torch.device("meta"):
        network = model_classes()[info["class"]](**info["args"])
    try:
        network.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the checkpoint's {what} tensors do not fit its recorded arguments: {exc}") from exc
    return network


__all__ = ["ExportResult", "export_checkpoint"]
