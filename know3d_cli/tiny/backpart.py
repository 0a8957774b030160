"""The toy models of the back-part benchmark (`scripts/bench_backpart.py`).

The sparse-structure stage at a width and depth a CPU trains in minutes: a VAE from the 64^3 occupancy to an
8 x 8^3 latent (three downsamplings instead of the released two, so the flow attends over 512 tokens instead of 4096),
an SS flow on that latent conditioned on the tiny DINOv3's tokens, and a Know3D adapter on the tiny editor's H_DiT.
Everything else (the editor, DINOv3, the shape and texture stages) is the tiny random set of `tiny/__init__.py`.

`write_model_folders` lays such a set out in the released folder layout: a TRELLIS.2 folder (the tiny one with its
SS flow replaced) and a TRELLIS-image-large folder (the SS encoder and decoder), from given checkpoints or, before
training, from random weights with these architectures (what `train.from_scratch=true` starts from).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write
from ..trellis2.checkpoint import save_checkpoint
from ..trellis2.models.sparse_structure_decoder import SparseStructureDecoder
from ..trellis2.models.sparse_structure_encoder import SparseStructureEncoder
from ..trellis2.models.sparse_structure_flow import SparseStructureFlowModel
from .dinov3 import TINY_DINOV3_HIDDEN
from .marker import clear, mark_complete
from .trellis2 import SS_DECODER_DIR, SS_DECODER_NAME, SS_ENCODER_NAME, TRELLIS2_DIR

logger = logging.getLogger(__name__)

SS_FLOW_NAME = "ss_flow_img_dit_1_3B_64_bf16"  # the released name, so pipeline.json finds it
LATENT_SIDE = 8
SS_ENCODER_ARGS: dict[str, Any] = {"in_channels": 1, "latent_channels": 8, "num_res_blocks": 1,
                                   "num_res_blocks_middle": 1, "channels": [4, 8, 16, 32], "use_fp16": True}
SS_DECODER_ARGS: dict[str, Any] = {"out_channels": 1, "latent_channels": 8, "num_res_blocks": 1,
                                   "num_res_blocks_middle": 1, "channels": [32, 16, 8, 4], "use_fp16": True}
SS_FLOW_ARGS: dict[str, Any] = {"resolution": LATENT_SIDE, "in_channels": 8, "out_channels": 8, "model_channels": 64,
                                "cond_channels": TINY_DINOV3_HIDDEN, "num_blocks": 4, "num_heads": 4, "mlp_ratio": 4.0,
                                "pe_mode": "rope", "share_mod": True, "qk_rms_norm": True, "qk_rms_norm_cross": True,
                                "dtype": "bfloat16"}


def write_model_folders(out: Path, tiny_root: Path, weights: Path | None = None, seed: int = 0) -> Path:
    """`out/trellis2` (the tiny TRELLIS.2 folder with this SS flow) and `out/trellis_image_large` (this SS VAE).

    Args:
        out: the folder to write (know3d's marker rules: new, empty, or written by know3d).
        tiny_root: a complete tiny random set (`build_tiny_models`).
        weights: a folder with `ckpts/<name>.{json,safetensors}` of the SS flow, encoder and decoder; None writes
            random weights with the architectures above.
        seed: seed of the random weights.
    """
    out = Path(out)
    clear(out)
    trellis_dir, ss_dir = out / TRELLIS2_DIR, out / SS_DECODER_DIR
    shutil.copytree(Path(tiny_root) / TRELLIS2_DIR, trellis_dir, ignore=shutil.ignore_patterns(".know3d-tiny.json"))
    (ss_dir / "ckpts").mkdir(parents=True)
    for name, target in ((SS_FLOW_NAME, trellis_dir), (SS_ENCODER_NAME, ss_dir), (SS_DECODER_NAME, ss_dir)):
        for suffix in (".json", ".safetensors"):
            (target / "ckpts" / f"{name}{suffix}").unlink(missing_ok=True)
    if weights is None:
        _write_random(trellis_dir, ss_dir, seed)
    else:
        for name, target in ((SS_FLOW_NAME, trellis_dir), (SS_ENCODER_NAME, ss_dir), (SS_DECODER_NAME, ss_dir)):
            for suffix in (".json", ".safetensors"):
                shutil.copyfile(Path(weights) / "ckpts" / f"{name}{suffix}", target / "ckpts" / f"{name}{suffix}")
    mark_complete(out, "backpart-set", seed)
    return out


def _write_random(trellis_dir: Path, ss_dir: Path, seed: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = SparseStructureFlowModel(**SS_FLOW_ARGS)
        save_checkpoint(flow, trellis_dir / "ckpts" / SS_FLOW_NAME, "SparseStructureFlowModel", SS_FLOW_ARGS,
                        dtype=torch.bfloat16, write=atomic_write)
        for cls, name, args in ((SparseStructureEncoder, SS_ENCODER_NAME, SS_ENCODER_ARGS),
                                (SparseStructureDecoder, SS_DECODER_NAME, SS_DECODER_ARGS)):
            network = cls(**args)
            network.convert_to_fp16()
            save_checkpoint(network, ss_dir / "ckpts" / name, cls.__name__, args, write=atomic_write)


__all__ = ["LATENT_SIDE", "SS_DECODER_ARGS", "SS_ENCODER_ARGS", "SS_FLOW_ARGS", "SS_FLOW_NAME", "write_model_folders"]
