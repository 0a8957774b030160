"""preview.png and turntable.webp: the exported model, read back from its own bytes, rendered offscreen.

`preview.png` is a contact sheet: the PBR colour pass (base colour, metallic-roughness, key + fill + ambient light)
above the camera-space normals pass, each from the front, right, back and left (glTF +Z is the front, as the input
photo faced the camera), 10 degrees above the horizon, on a light grey background. `turntable.webp` is a looping
animated WebP of the colour pass over one full turn (`export.turntable`).

The model is parsed back from the exported files (GLB, or OBJ with its MTL and textures, or PLY) by trimesh, so the
preview shows what a viewer reads, and rendered by `know3d_cli.render` (pyrender: Mesa's llvmpipe on a CPU, the
GPU's EGL when there is one). Meshes above `export.preview_faces` are decimated first (see `preview_mesh.py`).

The renderer is the optional `render` extra. Without it, or without any OpenGL context, the asset is still written:
previews are a convenience and must not throw away a generation that took minutes of GPU time. `render_previews`
then returns a one-line warning (logged, and recorded in metadata.json) that says how to get them.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from PIL import Image

from ..config import ExportConfig
from ..errors import BackendUnavailable
from ..timing import timed
from .mesh_formats import EncodedMesh
from .preview_mesh import simplify_scene

logger = logging.getLogger(__name__)

PREVIEW_FILE = "preview.png"
TURNTABLE_FILE = "turntable.webp"
VIEW_NAMES = ("front", "right", "back", "left")  # the order of `render.cardinal_views`
PREVIEW_ELEVATION = 10.0  # degrees above the horizon: shows a little of the top, like a product shot
TURNTABLE_ELEVATION = 15.0
BACKGROUND = (0.93, 0.93, 0.93)  # light grey: white and black objects both stay visible
TURNTABLE_QUALITY = 85  # lossy WebP frames


@dataclass(frozen=True)
class Previews:
    files: dict[str, bytes] = field(repr=False)  # PREVIEW_FILE and/or TURNTABLE_FILE -> content (empty: none)
    warnings: list[str]  # why a requested preview was not made
    info: dict[str, Any]  # faces rendered, renderer, seconds (metadata)


def render_previews(model: EncodedMesh, cfg: ExportConfig,
                    timings: Optional[dict[str, float]] = None) -> Previews:
    """The preview files `cfg` asks for (`export.preview`, `export.turntable`); never touches disk.

    A missing renderer or OpenGL context gives no files and one warning instead of an error.
    """
    wanted = [name for name, on in ((PREVIEW_FILE, cfg.preview), (TURNTABLE_FILE, cfg.turntable)) if on]
    if not wanted:
        return Previews({}, [], {})
    from ..render import RenderSettings, Renderer, cardinal_views, turntable_views

    with timed(timings, "preview_mesh"):
        scene = load_exported(model)
        source_faces = _face_count(scene)
        scene = simplify_scene(scene, cfg.preview_faces)
    files: dict[str, bytes] = {}
    try:
        with Renderer(scene, RenderSettings(size=cfg.preview_size, background=BACKGROUND)) as renderer:
            if cfg.preview:
                with timed(timings, "preview"):
                    views = cardinal_views(PREVIEW_ELEVATION)
                    files[PREVIEW_FILE] = preview_sheet(renderer.render(views), renderer.render(views, kind="normal"))
            if cfg.turntable:
                with timed(timings, "turntable"):
                    frames = renderer.render(turntable_views(cfg.turntable_frames, TURNTABLE_ELEVATION))
                    files[TURNTABLE_FILE] = turntable_webp(frames, cfg.turntable_fps)
    except BackendUnavailable as exc:
        message = (f"no {' or '.join(wanted)}: {exc} (or set export.preview=false"
                   f"{' export.turntable=false' if cfg.turntable else ''})")
        logger.warning(message)
        return Previews({}, [message], {})
    return Previews(files, [], {"files": sorted(files), "source_faces": source_faces,
                                "rendered_faces": _face_count(scene), "size": cfg.preview_size})


def load_exported(model: EncodedMesh):
    """The exported files parsed back into a trimesh `Scene` (textures and MTL resolved from memory)."""
    import trimesh

    archive = {name: io.BytesIO(data) for name, data in model.files.items()}
    loaded = trimesh.load(io.BytesIO(model.data), file_type=model.extension,
                          resolver=trimesh.resolvers.ZipResolver(archive), process=False)
    return loaded if isinstance(loaded, trimesh.Scene) else trimesh.Scene(loaded)


def preview_sheet(colour: list[np.ndarray], normals: list[np.ndarray]) -> bytes:
    """Colour tiles over normal tiles ((S, S, 4) uint8 each, in `VIEW_NAMES` order), titled -> PNG bytes."""
    from ..render import contact_sheet

    rows = [[Image.fromarray(tile).convert("RGB") for tile in row] for row in (colour, normals)]
    buffer = io.BytesIO()
    contact_sheet(rows, titles=VIEW_NAMES).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def turntable_webp(frames: list[np.ndarray], fps: float) -> bytes:
    """(S, S, 4) uint8 frames -> a looping animated WebP."""
    images = [Image.fromarray(frame).convert("RGB") for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="WEBP", save_all=True, append_images=images[1:], duration=round(1000.0 / fps),
                   loop=0, quality=TURNTABLE_QUALITY, method=4)
    return buffer.getvalue()


def _face_count(scene) -> int:
    return sum(len(g.faces) for g in scene.geometry.values() if hasattr(g, "faces"))


__all__ = ["PREVIEW_FILE", "Previews", "TURNTABLE_FILE", "VIEW_NAMES", "load_exported", "preview_sheet",
           "render_previews", "turntable_webp"]
