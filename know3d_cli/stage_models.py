"""The models of the chain's stages: found on disk before any work, loaded on first use, on the compute device only
while their stage runs, and dropped after a single run (a batch keeps them for the next asset).

The order in which an asset uses them is declared as data (`STAGE_SEQUENCE`, like diffusers'
`model_cpu_offload_seq`). One policy applies `runtime.offload` to it: the TRELLIS.2 library's `Residency`, which is
also the only code in the app that returns GPU memory to the driver. TRELLIS.2 moves its own networks, in the order
its pipeline declares (`Trellis2Pipeline.model_offload_sequence`), under the same policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from . import hub
from .config import Background, Know3dConfig
from .errors import ModelMissingError, OutOfMemory
from .run_plan import RunPlan
from .runtime import Runtime, reset_peak_memory
from .trellis2 import Residency

logger = logging.getLogger(__name__)

# The stages' models in the order an asset uses them.
STAGE_SEQUENCE = ("birefnet", "mllm", "editor", "trellis2")
# What each model's stage does, for the out-of-memory message.
STAGE_TASKS = {
    "birefnet": "background removal (birefnet)",
    "mllm": "back-view description (mllm)",
    "editor": "back-view imagination (editor)",
    "trellis2": "3D generation (TRELLIS.2)",
}
# TRELLIS.2 moves its networks itself, one at a time, in its own declared order.
MOVES_ITS_OWN_NETWORKS = {"trellis2"}


class StageModels:
    """The models one pipeline needs.

    Args:
        cfg: the run's configuration (which models, from where, with which settings).
        plan: the resolved mode (`hub.needed_models`) and the Know3D adapter folder.
        runtime: device, dtype and offload policy.
        keep: keep every model loaded after its stage (batch); otherwise each is dropped once its stage is done.

    Raises:
        ModelMissingError: a model the run needs is not on disk (checked here, before any work).
    """

    def __init__(self, cfg: Know3dConfig, plan: RunPlan, runtime: Runtime, keep: bool = False):
        self.cfg = cfg
        self.plan = plan
        self.runtime = runtime
        self.keep = keep
        self.residency = Residency(runtime.device, runtime.offload, STAGE_SEQUENCE)
        self.resolved: dict[str, hub.ResolvedModel] = {name: hub.resolve(cfg, name)
                                                       for name in hub.needed_models(cfg)}
        if cfg.preprocess.background is Background.auto:  # BiRefNet when its weights were pulled, else threshold
            try:
                self.resolved["birefnet"] = hub.resolve(cfg, "birefnet", download=False)
            except ModelMissingError:
                pass
        self._loaders: dict[str, Callable[[Path], Any]] = {
            "birefnet": self._load_birefnet,
            "mllm": self._load_mllm,
            "editor": self._load_editor,
            "trellis2": self._load_trellis2,
        }
        self._loaded: dict[str, Any] = {}

    def start_asset(self) -> None:
        """A new asset starts the stage sequence (and the peak-memory measurement) from the beginning."""
        self.residency.start_run()
        reset_peak_memory(self.runtime)

    @contextmanager
    def using(self, name: str) -> Iterator[Any]:
        """The model of stage `name` for the block: loaded on first use, on the compute device while the block runs
        (sequential offload sends it home after), dropped after the block unless kept. Yields None for a model the
        run does not need (birefnet unless `preprocess.background=birefnet`, or `auto` with its weights on disk).

        Raises:
            OutOfMemory: CUDA ran out of memory in the block (exit 4, with what to try).
        """
        if name not in self.resolved:
            yield None
            return
        try:
            model = self._loaded.get(name)
            if model is None:
                model = self._loaded[name] = self._loaders[name](self.resolved[name].path)
            movable = () if name in MOVES_ITS_OWN_NETWORKS else (model,)
            with self.residency.on_device(name, *movable):
                yield model
        except torch.OutOfMemoryError as exc:
            self.residency.free_cache()
            raise OutOfMemory(
                f"out of GPU memory during {STAGE_TASKS[name]}; try runtime.offload=sequential, a lower "
                f"editor.resolution, trellis2.pipeline_type=512 or precision=bf16"
            ) from exc
        finally:
            self.release(name)

    def release_all(self) -> None:
        """Drop every loaded model, kept or not (a batch moving on to rows with other settings)."""
        self._loaded.clear()
        self.residency.free_cache()

    def release(self, name: str) -> None:
        """Drop a stage's model, unless models are kept (batch)."""
        if not self.keep and self._loaded.pop(name, None) is not None:
            self.residency.free_cache()

    # ------------------------------------------------------------------------------------------------ loaders
    def _load_birefnet(self, path: Path):
        from .preprocess import BiRefNetMasker

        return BiRefNetMasker(path, device=self.residency.home)

    def _load_mllm(self, path: Path):
        from .mllm import BackViewExpander

        return BackViewExpander(path, self.cfg.mllm, self.runtime)

    def _load_editor(self, path: Path):
        from .editor import load_editor

        return load_editor(path, self.cfg.editor, self.runtime)

    def _load_trellis2(self, path: Path):
        from .trellis2 import Trellis2Pipeline

        runtime = self.runtime
        return Trellis2Pipeline.from_pretrained(
            path,
            dinov3_dir=self.resolved["dinov3"].path,
            ss_decoder_dir=self.resolved["ss_decoder"].path,
            adapter_dir=self.plan.adapter_dir,
            settings=self.cfg.trellis2,
            adapter=self.cfg.adapter,
            device=runtime.device,
            precision=runtime.trellis2_precision,
            offload=runtime.offload,
            attention=runtime.attention,
            sparse_conv=runtime.sparse_conv,
            compile=runtime.compile,
        )


__all__ = ["STAGE_SEQUENCE", "STAGE_TASKS", "StageModels"]
