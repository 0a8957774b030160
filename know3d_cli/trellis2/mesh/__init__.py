"""Mesh extraction: occupancy surfaces, O-Voxel flexible dual grids, and sparse attribute sampling."""

from .dual_grid import fill_small_holes, flexible_dual_grid_to_mesh
from .grid_sample import VoxelIndex, grid_sample_3d
from .occupancy import occupancy_to_mesh

__all__ = ["VoxelIndex", "fill_small_holes", "flexible_dual_grid_to_mesh", "grid_sample_3d", "occupancy_to_mesh"]
