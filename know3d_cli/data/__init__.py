"""Training data for Know3D: 3D assets -> O-Voxels, front/back renders, latents and conditions (`know3d data`).

The building blocks are exported here; `build.py` (`know3d data build`) and `inspect.py` (`know3d data inspect`)
load the models and are imported on their own.
"""

from .asset import ASSET_FAILURES, NORMALISED_SIDE, Asset, asset_from_scene, load_asset
from .material import DEFAULT_MATERIAL, Material
from .ovoxel import OVoxel, asset_to_ovoxel
from .pbr_voxels import ATTRIBUTE_LAYOUT
from .views import ViewPair, asset_scene, draw_view_angles, occupancy_azimuth, render_view_pair

__all__ = [
    "ASSET_FAILURES", "ATTRIBUTE_LAYOUT", "Asset", "DEFAULT_MATERIAL", "Material", "NORMALISED_SIDE", "OVoxel",
    "ViewPair", "asset_from_scene", "asset_scene", "asset_to_ovoxel", "draw_view_angles", "load_asset",
    "occupancy_azimuth", "render_view_pair",
]
