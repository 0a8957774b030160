"""Offscreen rendering of 3D assets (optional `render` extra: pyrender on EGL/OSMesa, CPU or GPU)."""

from .backend import EXTRA, load_pyrender
from .camera import UNIT_CUBE_RADIUS, Framing, OrbitView, cardinal_views, orbit_pose, turntable_views
from .renderer import PASSES, RenderSettings, Renderer, render_views

__all__ = [
    "EXTRA", "Framing", "OrbitView", "PASSES", "RenderSettings", "Renderer", "UNIT_CUBE_RADIUS", "cardinal_views",
    "load_pyrender", "orbit_pose", "render_views", "turntable_views",
]
