"""Render a trimesh model from orbit views to RGBA images (pyrender; CPU through Mesa, GPU through the driver).

Two passes:
- "color": the PBR material (base colour from texture, vertex colours or factor) under a key light, a fill light
  and ambient light that follow the camera (`shading="lit"`), or the unlit base colour (`shading="flat"`);
- "normal": camera-space face normals encoded as `(n + 1) / 2` (x right, y up, z towards the viewer: a face
  looking at the camera is (128, 128, 255)).

Images are (size, size, 4) uint8 RGBA with straight (not premultiplied) alpha, row 0 at the top. The background
is transparent (alpha 0) unless `background` names a colour. Both sides of every triangle are drawn, as Blender
renders them. One `Renderer` holds the uploaded model, so several passes and view lists cost one upload;
`render_views` is the one-call form. The OpenGL context behind it is shared by every renderer of the same size in
the process (see `backend.offscreen_renderer`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .backend import load_pyrender, offscreen_renderer
from .camera import UNIT_CUBE_RADIUS, OrbitView, orbit_pose
from .model import bounds, color_mesh, normal_mesh, world_parts

logger = logging.getLogger(__name__)

PASSES = ("color", "normal")
_MARGIN = 1.05  # the framed sphere fills 1 / _MARGIN of the view
# lights in the camera's frame (x right, y up, z back): key from the upper left, fill from the lower right
_KEY = (2.2, (-1.0, 1.2, 1.5))
_FILL = (0.7, (1.2, -0.4, 1.0))
_AMBIENT = 0.25


@dataclass(frozen=True)
class RenderSettings:
    size: int = 512  # image side in pixels (square)
    projection: str = "perspective"  # perspective | orthographic
    fov: float = 40.0  # vertical field of view of the perspective camera, degrees
    framing: str = "bounds"  # bounds (the model's bounding sphere fills the view) | unit_cube ([-0.5, 0.5]^3 does)
    background: tuple[float, float, float] | None = None  # RGB in [0, 1] behind the model; None = transparent
    shading: str = "lit"  # lit (PBR under key, fill and ambient light) | flat (unlit base colour)

    def __post_init__(self):
        for name, value, allowed in (("projection", self.projection, ("perspective", "orthographic")),
                                     ("framing", self.framing, ("bounds", "unit_cube")),
                                     ("shading", self.shading, ("lit", "flat"))):
            if value not in allowed:
                raise ValueError(f"RenderSettings.{name} must be one of {', '.join(allowed)}, got {value!r}")
        if not 1 <= self.size <= 16384 or not 0 < self.fov < 180:
            raise ValueError(f"RenderSettings size must be in [1, 16384] and fov in (0, 180), got {self.size}, "
                             f"{self.fov}")


class Renderer:
    """An offscreen context with one model loaded.

    Args:
        model: trimesh `Scene` or `Trimesh` (glTF frame: +Y up, front facing +Z).
        settings: image size, camera, framing, background, shading.

    Raises:
        BackendUnavailable: pyrender is not installed or no OpenGL context can be created (exit 4).
        InputError: the model has no triangle.
    """

    def __init__(self, model, settings: RenderSettings = RenderSettings()):
        self.settings = settings
        self._pyrender = load_pyrender()
        self._parts = world_parts(model)
        if not self._parts:
            raise InputError("nothing to render: the model has no triangle")
        if settings.framing == "unit_cube":
            self.center, self.radius = np.zeros(3), UNIT_CUBE_RADIUS
        else:
            lower, upper = bounds(self._parts)
            self.center, self.radius = (lower + upper) / 2, max(float(np.linalg.norm(upper - lower)) / 2, 1e-6)
        self._gl = offscreen_renderer(self._pyrender, settings.size, settings.size)
        self._scenes: dict[str, tuple] = {}

    def render(self, views: Sequence[OrbitView], kind: str = "color") -> list[np.ndarray]:
        """Render each view -> list of (size, size, 4) uint8 RGBA images, in the order of `views`."""
        if kind not in PASSES:
            raise ValueError(f"render pass must be one of {', '.join(PASSES)}, got {kind!r}")
        scene, camera, lights = self._scene(kind)
        flags = self._pyrender.RenderFlags
        mode = flags.RGBA | flags.SKIP_CULL_FACES
        if kind == "normal" or self.settings.shading == "flat":
            mode |= flags.FLAT
        images = []
        for view in views:
            pose = orbit_pose(view, self.center, self._distance())
            scene.set_pose(camera, pose)
            for node, direction in lights:
                scene.set_pose(node, pose @ _light_rotation(direction))
            color, _ = self._gl.render(scene, flags=mode)
            rgba = _straight_alpha(color)
            if kind == "normal":
                rgba = _to_camera_normals(rgba, pose[:3, :3])
            images.append(self._background(rgba))
        return images

    def close(self) -> None:
        """Drop the uploaded scenes (their GPU buffers are freed when the shared context next renders)."""
        self._scenes.clear()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _distance(self) -> float:
        if self.settings.projection == "orthographic":
            return 3.0 * self.radius
        return _MARGIN * self.radius / math.sin(math.radians(self.settings.fov) / 2)

    def _scene(self, kind: str):
        if kind in self._scenes:
            return self._scenes[kind]
        pyrender = self._pyrender
        scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 0.0), ambient_light=(_AMBIENT,) * 3)
        make = color_mesh if kind == "color" else normal_mesh
        for part in self._parts:
            scene.add(make(pyrender, part))
        distance, reach = self._distance(), _MARGIN * self.radius * 1.5
        near, far = max(distance - reach, 1e-3 * distance), distance + reach
        if self.settings.projection == "orthographic":
            camera = pyrender.OrthographicCamera(xmag=_MARGIN * self.radius, ymag=_MARGIN * self.radius,
                                                 znear=near, zfar=far)
        else:
            camera = pyrender.PerspectiveCamera(yfov=math.radians(self.settings.fov), aspectRatio=1.0, znear=near,
                                                zfar=far)
        camera_node = scene.add(camera, pose=np.eye(4))
        lights = []
        if kind == "color":
            for intensity, direction in (_KEY, _FILL):
                node = scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=intensity), pose=np.eye(4))
                lights.append((node, direction))
        self._scenes[kind] = (scene, camera_node, lights)
        logger.debug("render scene %s: %d parts, centre %s, radius %.4g", kind, len(self._parts), self.center,
                     self.radius)
        return self._scenes[kind]

    def _background(self, rgba: np.ndarray) -> np.ndarray:
        if self.settings.background is None:
            return rgba
        alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
        back = np.asarray(self.settings.background, dtype=np.float32) * 255.0
        out = np.empty_like(rgba)
        out[:, :, :3] = np.round(rgba[:, :, :3] * alpha + back * (1.0 - alpha)).astype(np.uint8)
        out[:, :, 3] = 255
        return out


def render_views(model, views: Sequence[OrbitView], settings: RenderSettings = RenderSettings(),
                 kind: str = "color") -> list[np.ndarray]:
    """Render `model` from each view in one call -> list of (size, size, 4) uint8 RGBA images."""
    with Renderer(model, settings) as renderer:
        return renderer.render(views, kind)


def _light_rotation(direction) -> np.ndarray:
    """(4, 4) rotation, in the camera's frame, of a light shining from `direction` towards the target."""
    back = np.asarray(direction, dtype=np.float64)
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    rotation = np.eye(4)
    rotation[:3, 0], rotation[:3, 1], rotation[:3, 2] = right, np.cross(back, right), back
    return rotation


def _straight_alpha(color: np.ndarray) -> np.ndarray:
    """The renderer's multisampled edges come out premultiplied by coverage; divide it back out."""
    rgba = color.astype(np.float32)
    alpha = rgba[:, :, 3:4]
    rgb = np.where(alpha > 0, rgba[:, :, :3] * 255.0 / np.maximum(alpha, 1.0), 0.0)
    return np.concatenate([np.clip(np.round(rgb), 0, 255), alpha], axis=2).astype(np.uint8)


def _to_camera_normals(rgba: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """World normals encoded in RGB -> camera-space normals encoded the same way (camera axes = rotation columns)."""
    world = rgba[:, :, :3].astype(np.float32) / 127.5 - 1.0
    camera = world @ rotation.astype(np.float32)  # n_cam = R^T n_world, per pixel
    camera /= np.maximum(np.linalg.norm(camera, axis=2, keepdims=True), 1e-6)
    out = rgba.copy()
    out[:, :, :3] = np.where(rgba[:, :, 3:4] > 0, np.round((camera + 1.0) * 127.5), 0).astype(np.uint8)
    return out


__all__ = ["PASSES", "RenderSettings", "Renderer", "render_views"]
