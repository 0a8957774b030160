"""Stage-1 occupancy logits -> closed surface mesh (marching cubes at level 0)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from skimage.measure import marching_cubes

from ...errors import GenerationError

logger = logging.getLogger(__name__)


def occupancy_to_mesh(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Extract the level-0 surface of the sparse-structure decoder logits.

    The volume is padded by one voxel of "outside" so surfaces touching the grid border still close.
    Positions are in TRELLIS.2's frame: voxel i's centre sits at (i + 0.5) / R - 0.5, so the object lies in
    [-0.5, 0.5]^3. Array axes are (x, y, z).

    Args:
        logits: (R, R, R) float occupancy logits (> 0 = occupied).

    Returns:
        vertices: (V, 3) float32; faces: (F, 3) int64, counter-clockwise seen from outside.

    Raises:
        GenerationError: no logit is positive (the sparse structure is empty).
    """
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape (R, R, R), got {tuple(logits.shape)}")
    volume = logits.detach().to(torch.float32).cpu().numpy()
    if not np.isfinite(volume).all():
        raise GenerationError("the sparse structure decoder produced non-finite logits (NaN/Inf); try another seed")
    if not (volume > 0).any():
        raise GenerationError(
            "the sparse structure is empty: no occupied voxel (all decoder logits <= 0); try another seed or image"
        )
    outside = min(float(volume.min()), -1.0)
    padded = np.pad(volume, 1, mode="constant", constant_values=outside)
    verts, faces, _, _ = marching_cubes(padded, level=0.0, allow_degenerate=False)
    resolution = np.asarray(volume.shape, dtype=np.float64)
    # padded index p is voxel p - 1, whose centre is at (p - 1 + 0.5) / R - 0.5
    verts = (verts - 0.5) / resolution - 0.5
    faces = faces[:, [0, 2, 1]]  # scikit-image winds them inward for a bright (positive) object
    logger.debug("occupancy surface: %d vertices, %d faces", len(verts), len(faces))
    return torch.from_numpy(verts.astype(np.float32)), torch.from_numpy(faces.astype(np.int64))


__all__ = ["occupancy_to_mesh"]
