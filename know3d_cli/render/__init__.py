"""Pictures of 3D results: offscreen rendering of meshes (optional `render` extra: pyrender on EGL/OSMesa, CPU or
GPU) and cheap numpy depth pictures of occupancy grids (previews, contact sheets, benchmark figures)."""

from .backend import EXTRA, load_pyrender
from .camera import UNIT_CUBE_RADIUS, Framing, OrbitView, cardinal_views, orbit_pose, turntable_views
from .occupancy import contact_sheet, depth_image, depth_map, front_and_back
from .renderer import PASSES, RenderSettings, Renderer, render_views

__all__ = [
    "EXTRA", "Framing", "OrbitView", "PASSES", "RenderSettings", "Renderer", "UNIT_CUBE_RADIUS", "cardinal_views",
    "contact_sheet", "depth_image", "depth_map", "front_and_back", "load_pyrender", "orbit_pose", "render_views",
    "turntable_views",
]
