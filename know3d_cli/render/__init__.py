"""Cheap pictures of 3-D results for previews, contact sheets and benchmark figures."""

from .occupancy import contact_sheet, depth_image, depth_map, front_and_back

__all__ = ["contact_sheet", "depth_image", "depth_map", "front_and_back"]
