"""Tiny random Know3D adapter folder (`<stage>.json` + `<stage>.safetensors` for ss, shape and tex) that fits the
tiny TRELLIS.2 flows and the tiny editor's hidden size.

Unlike a freshly initialised adapter, whose zero out-projection makes it a no-op, the tiny one has small random
out-projections, so `mode=know3d` on tiny models visibly depends on the tapped tokens (tests rely on that).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..io import atomic_write
from ..trellis2.checkpoint import save_adapter
from ..trellis2.models.know3d_adapter import Know3dAdapter
from ..trellis2.settings import AdapterStage
from .marker import clear, is_complete, mark_complete
from .trellis2 import TINY_MODEL_CHANNELS, TINY_NUM_BLOCKS, TINY_NUM_HEADS

logger = logging.getLogger(__name__)

TINY_ADAPTER_PROJ = 32  # projected token channels
_OUT_STD = 0.05  # std of the out-projection weights (zero in a fresh adapter)


def tiny_adapter(ext_channels: int, seed: int = 0) -> Know3dAdapter:
    """A tiny adapter on every block of the tiny flows, with non-zero out-projections."""
    torch.manual_seed(seed)
    adapter = Know3dAdapter(
        ext_channels=ext_channels,
        proj_channels=TINY_ADAPTER_PROJ,
        model_channels=TINY_MODEL_CHANNELS,
        num_heads=TINY_NUM_HEADS,
        blocks=tuple(range(TINY_NUM_BLOCKS)),
        pool=1,
        qk_rms_norm=True,
    )
    with torch.no_grad():
        for index in adapter.block_ids:
            out = adapter.editor_attention(index).to_out
            out.weight.normal_(0.0, _OUT_STD)
            out.bias.normal_(0.0, _OUT_STD)
    return adapter.eval()


def write_tiny_adapter(path: Path, ext_channels: int, seed: int = 0) -> Path:
    """Write one tiny adapter pair per stage to `path`; deterministic in (seed, ext_channels), idempotent."""
    path = Path(path)
    kind = f"adapter-ext{ext_channels}"
    if is_complete(path, kind, seed):
        return path
    clear(path)
    with torch.random.fork_rng(devices=[]):
        for index, stage in enumerate(AdapterStage):
            save_adapter(tiny_adapter(ext_channels, seed * 10 + index), path, stage, dtype=torch.bfloat16,
                         write=atomic_write)
    mark_complete(path, kind, seed)
    logger.debug("wrote tiny adapter to %s", path)
    return path


__all__ = ["TINY_ADAPTER_PROJ", "tiny_adapter", "write_tiny_adapter"]
