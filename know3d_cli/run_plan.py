"""What every asset of a run does, decided from the config before any model loads: the mode that runs and the
Know3D adapter it needs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .config import Know3dConfig, Mode
from .errors import ModelMissingError

logger = logging.getLogger(__name__)

AUTO_FALLBACK_WARNING = "no Know3D adapter weights configured (adapter.weights); using training-free multiview mode"


@dataclass(frozen=True)
class RunPlan:
    mode: Mode  # the mode that runs: `auto` resolved to know3d or multiview
    adapter_dir: Path | None  # Know3D adapter files, checked complete (know3d mode only)
    warnings: tuple[str, ...]  # recorded in every asset's metadata (e.g. auto fell back to multiview)

    @property
    def uses_editor(self) -> bool:
        return self.mode is not Mode.trellis


def plan_run(cfg: Know3dConfig) -> RunPlan:
    """Resolve `mode`; `know3d` needs complete adapter weights (exit 3 without)."""
    mode, warnings = cfg.mode, ()
    if mode is Mode.know3d and not cfg.adapter.weights:
        raise ModelMissingError(
            "mode=know3d needs Know3D adapter weights: set adapter.weights=DIR (a folder with <stage>.json and "
            "<stage>.safetensors for each of adapter.stages), or use --mode multiview"
        )
    if mode is Mode.auto:
        mode = Mode.know3d if cfg.adapter.weights else Mode.multiview
        if mode is Mode.multiview:
            logger.warning(AUTO_FALLBACK_WARNING)
            warnings = (AUTO_FALLBACK_WARNING,)
    return RunPlan(mode, adapter_dir(cfg) if mode is Mode.know3d else None, warnings)


def adapter_dir(cfg: Know3dConfig) -> Path:
    """The adapter directory, checked to hold a file pair for every stage in `adapter.stages` (exit 3 if not)."""
    path = Path(str(cfg.adapter.weights)).expanduser()
    missing = [f"{stage}.{ext}" for stage in cfg.adapter.stages for ext in ("json", "safetensors")
               if not (path / f"{stage}.{ext}").is_file()]
    if missing:
        raise ModelMissingError(f"Know3D adapter not found: {path} lacks {', '.join(missing)}")
    if not cfg.adapter.stages:
        raise ModelMissingError("mode=know3d with adapter.stages=[] would not use the adapter; name at least one stage")
    return path


__all__ = ["RunPlan", "adapter_dir", "plan_run"]
