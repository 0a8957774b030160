"""Geometry types shared by the TRELLIS.2 library and export: the generated asset and sparse voxel sampling.

A foundation module: it imports nothing from know3d_cli, so every layer may use it.
"""

from .asset import Asset3D
from .grid_sample import VoxelIndex, grid_sample_3d

__all__ = ["Asset3D", "VoxelIndex", "grid_sample_3d"]
