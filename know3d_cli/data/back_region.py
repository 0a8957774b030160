"""Scoring the back of a 64^3 occupancy: back-region IoU and part identification (the back-part benchmark).

Frame: TRELLIS.2's, the occupancy's `(x, y, z)` voxel indices; the front of an asset faces -y (glTF's +Z, render
azimuth 0) and its back +y, so the back region is the half of the grid with `y >= side / 2`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

logger = logging.getLogger(__name__)

SIDE = 64  # the sparse-structure grid


def back_grid(coords: np.ndarray, side: int = SIDE) -> np.ndarray:
    """(M, 3) occupied voxels -> (side, side, side) bool grid of those in the back half (`y >= side / 2`)."""
    grid = np.zeros((side,) * 3, bool)
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 3)
    back = coords[coords[:, 1] >= side // 2]
    grid[tuple(back.T)] = True
    return grid


def back_iou(coords: np.ndarray, truth: np.ndarray, side: int = SIDE) -> float:
    """IoU of two voxel sets restricted to the back half (1.0 when both are empty there)."""
    a, b = back_grid(coords, side), back_grid(truth, side)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def identify_part(coords: np.ndarray, references: Mapping[str, np.ndarray], side: int = SIDE) -> str:
    """The reference (e.g. each part on the same base body) whose back region best matches `coords` (IoU)."""
    if not references:
        raise ValueError("identify_part needs at least one reference")
    scores = {name: back_iou(coords, ref, side) for name, ref in references.items()}
    return max(scores, key=scores.__getitem__)


__all__ = ["SIDE", "back_grid", "back_iou", "identify_part"]
