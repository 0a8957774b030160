"""Training data for Know3D: 3D assets -> O-Voxels, renders and, later, latents and cached conditions."""

from .asset import ASSET_FAILURES, NORMALISED_SIDE, Asset, asset_from_scene, load_asset
from .material import DEFAULT_MATERIAL, Material
from .ovoxel import OVoxel, asset_to_ovoxel
from .pbr_voxels import ATTRIBUTE_LAYOUT

__all__ = [
    "ASSET_FAILURES", "ATTRIBUTE_LAYOUT", "Asset", "NORMALISED_SIDE", "DEFAULT_MATERIAL", "Material", "OVoxel", "asset_from_scene",
    "asset_to_ovoxel", "load_asset",
]
