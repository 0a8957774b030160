"""Which TRELLIS.2 networks are loaded, and where they live between stages.

Networks load once (strictly, from the checkpoint files) and are cached. With `runtime.offload=sequential` on a GPU
they are kept on the CPU and moved to the GPU only while their stage runs, so peak GPU memory is one stage's
networks plus its activations; otherwise they load straight onto the compute device and stay there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..choices import Choice
from .checkpoint import Precision, load_adapter, load_model
from .nn.attention import set_attention_backend
from .pipeline_spec import PipelineSpec
from .settings import AdapterStage
from .sparse.conv import set_conv_backend

if TYPE_CHECKING:
    from ..runtime import Runtime

logger = logging.getLogger(__name__)


class Offload(Choice):
    """Where networks wait between the stages that use them (config `runtime.offload`)."""

    sequential = "sequential"  # on the CPU; only the running stage's networks on the GPU (CUDA only)
    none = "none"  # on the compute device, all the time


class StageModels:
    """Lazy, cached access to the networks named in `pipeline.json` (and the Know3D adapters).

    Args:
        spec: the parsed `pipeline.json`.
        trellis_dir: the TRELLIS.2 folder; ss_decoder_dir: the TRELLIS-image-large folder.
        runtime: device, dtype (fp32 = exact everywhere; otherwise the reference mixed precision), offload policy,
            attention and sparse-conv backends.
    """

    def __init__(self, spec: PipelineSpec, trellis_dir: Path, ss_decoder_dir: Path | None, runtime: Runtime):
        self.spec = spec
        self.trellis_dir = Path(trellis_dir)
        self.ss_decoder_dir = Path(ss_decoder_dir) if ss_decoder_dir is not None else None
        self.runtime = runtime
        self._cache: dict[str, nn.Module] = {}

    @property
    def offloading(self) -> bool:
        return self.runtime.is_cuda and self.runtime.offload is Offload.sequential

    @property
    def home(self) -> torch.device:
        """Where networks wait between stages."""
        return torch.device("cpu") if self.offloading else self.runtime.device

    @property
    def precision(self) -> Precision:
        return Precision.fp32 if self.runtime.exact else Precision.reference

    def network(self, role: str) -> nn.Module:
        """The network of a `pipeline.json` role, loaded on first use."""
        if role not in self._cache:
            stem = self.spec.checkpoint(role, self.trellis_dir, self.ss_decoder_dir)
            model = load_model(stem, device=self.home, precision=self.precision)
            if hasattr(model, "set_attention_backend"):
                model.set_attention_backend(self.runtime.attention)
            set_conv_backend(model, self.runtime.sparse_conv)
            if self.runtime.compile and hasattr(model, "blocks") and role == "sparse_structure_flow_model":
                for block in model.blocks:  # dense, fixed shapes: the one flow that compiles without recompiles
                    block.compile()
            self._cache[role] = model
        return self._cache[role]

    def adapter(self, directory: Path, stage: AdapterStage, dtype: torch.dtype) -> nn.Module:
        """The Know3D adapter of one stage, its attention Linears in `dtype` (that of the flow it plugs into)."""
        key = f"adapter:{stage}"
        if key not in self._cache:
            adapter = load_adapter(directory, stage, device=self.home, dtype=dtype)
            set_attention_backend(adapter, self.runtime.attention)
            self._cache[key] = adapter
        return self._cache[key]

    @contextmanager
    def resident(self, *modules: nn.Module) -> Iterator[None]:
        """Keep `modules` on the compute device for the block (and send them home after, when offloading)."""
        for module in modules:
            module.to(self.runtime.device)
        try:
            yield
        finally:
            if self.offloading:
                for module in modules:
                    module.to(self.home)
                torch.cuda.empty_cache()


__all__ = ["Offload", "StageModels"]
