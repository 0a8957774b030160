"""Mesh extraction: occupancy surfaces and O-Voxel flexible dual grids."""

from .dual_grid import fill_small_holes, flexible_dual_grid_to_mesh
from .occupancy import occupancy_to_mesh

__all__ = ["fill_small_holes", "flexible_dual_grid_to_mesh", "occupancy_to_mesh"]
