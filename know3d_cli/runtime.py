"""Device, dtype and offload policy, decided once at the edge and passed down to every stage (models move between
devices in `stage_models.py`, under the TRELLIS.2 library's `Residency`)."""

from __future__ import annotations

import logging
import resource
import sys
from dataclasses import dataclass

import torch

from .config import RuntimeConfig, RuntimeDtype
from .errors import BackendUnavailable
from .trellis2 import AttentionBackend, ConvBackend, Offload, Precision

logger = logging.getLogger(__name__)

_DTYPES = {RuntimeDtype.bfloat16: torch.bfloat16, RuntimeDtype.float16: torch.float16,
           RuntimeDtype.float32: torch.float32}


@dataclass(frozen=True)
class Runtime:
    device: torch.device  # where the stage that is running computes
    dtype: torch.dtype  # compute dtype of the big networks (TRELLIS.2 keeps its reference mix on GPU)
    offload: Offload  # sequential: one stage resident on the GPU at a time; none: all resident
    compile: bool  # torch.compile the transformer blocks
    attention: AttentionBackend  # TRELLIS.2 attention backend
    sparse_conv: ConvBackend  # TRELLIS.2 sparse convolution backend

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def exact(self) -> bool:
        """fp32 everywhere (the reference mixed precision is only used in reduced precision)."""
        return self.dtype == torch.float32

    @property
    def trellis2_precision(self) -> Precision:
        """TRELLIS.2 networks in exact fp32, or in their reference mixed precision when the dtype is reduced."""
        return Precision.fp32 if self.exact else Precision.reference


def resolve_runtime(cfg: RuntimeConfig) -> Runtime:
    """Turn `runtime.*` into concrete torch objects; a CUDA request without CUDA is exit 4."""
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise BackendUnavailable(
                    f"runtime.device={cfg.device} but no CUDA GPU is usable here; use runtime.device=cpu or auto"
                )
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise BackendUnavailable(
                    f"runtime.device={cfg.device} but only {torch.cuda.device_count()} CUDA device(s) exist"
                )
    if cfg.dtype is RuntimeDtype.auto:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        dtype = _DTYPES[cfg.dtype]
    if device.type == "cpu" and dtype != torch.float32:
        logger.warning("runtime.dtype=%s on CPU is slow and inexact; precision=fp32 is recommended", cfg.dtype)
    return Runtime(device, dtype, cfg.offload, cfg.compile, cfg.attention, cfg.sparse_conv)


def reset_peak_memory(runtime: Runtime) -> None:
    if runtime.is_cuda:
        torch.cuda.reset_peak_memory_stats(runtime.device)


def peak_memory(runtime: Runtime) -> dict[str, object]:
    """Peak memory so far: CUDA max allocated on GPU, else the process's peak RSS."""
    if runtime.is_cuda:
        return {"kind": "cuda_max_allocated", "bytes": int(torch.cuda.max_memory_allocated(runtime.device))}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is KiB on Linux, bytes on macOS
    return {"kind": "peak_rss", "bytes": int(rss * scale)}
