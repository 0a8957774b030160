"""Training data for Know3D: 3D assets -> O-Voxels and front/back renders (latents and conditions come later)."""

from .asset import ASSET_FAILURES, NORMALISED_SIDE, Asset, asset_from_scene, load_asset
from .material import DEFAULT_MATERIAL, Material
from .ovoxel import OVoxel, asset_to_ovoxel
from .pbr_voxels import ATTRIBUTE_LAYOUT
from .views import ViewPair, asset_scene, draw_view_angles, render_view_pair

__all__ = [
    "ASSET_FAILURES", "ATTRIBUTE_LAYOUT", "Asset", "DEFAULT_MATERIAL", "Material", "NORMALISED_SIDE", "OVoxel",
    "ViewPair", "asset_from_scene", "asset_scene", "asset_to_ovoxel", "draw_view_angles", "load_asset",
    "render_view_pair",
]
