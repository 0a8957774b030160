"""Front and back renders of a training asset, cropped exactly as inference crops a photo.

The asset is rendered in glTF's frame (its Z-up TRELLIS.2 frame turned back with (x, y, z) -> (x, z, -y)), framed
by the normalised unit cube, with a transparent background: the alpha is the object mask. The back view is the
front azimuth + 180 degrees at the same elevation. Each render then goes through inference preprocessing
(`know3d_cli.preprocess`: downscale to `preprocess.max_side`, square crop around alpha > `preprocess.alpha_cutoff`,
premultiply onto black), so a training image and a user's photo reach the models the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import PreprocessConfig, ViewsConfig
from ..errors import AssetError, InputError
from ..preprocess import downscale, premultiply_on_black, square_crop
from ..render import OrbitView, RenderSettings, Renderer
from .asset import Asset

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ViewPair:
    azimuth: float  # front camera, degrees around +Y of glTF's frame (0 = the +Z side, i.e. TRELLIS.2's -Y side)
    elevation: float  # degrees, shared by both views
    front: Image.Image  # "RGBA" S x S inference crop of the front render (alpha = mask), saved as front.png
    back: Image.Image  # "RGBA" crop of the render at azimuth + 180, saved as back.png
    front_image: Image.Image  # "RGB" front crop premultiplied onto black: what the image encoders see
    back_image: Image.Image  # "RGB" back crop premultiplied onto black


def draw_view_angles(rng: np.random.Generator, cfg: ViewsConfig) -> tuple[float, float]:
    """(front azimuth, elevation) in degrees, uniform in `cfg.azimuth_range` and `cfg.elevation_range`."""
    return float(rng.uniform(*cfg.azimuth_range)), float(rng.uniform(*cfg.elevation_range))


def occupancy_azimuth(view_azimuth: float) -> float:
    """The azimuth of `render.occupancy` pictures (TRELLIS.2 frame: camera on (sin a, cos a, 0)) that looks from the
    same side as a render camera at `view_azimuth` (glTF frame: camera on (sin a, 0, cos a), i.e. TRELLIS.2's
    (sin a, -cos a, 0))."""
    return (180.0 - view_azimuth) % 360.0


def render_view_pair(asset: Asset, azimuth: float, elevation: float, views: ViewsConfig,
                     preprocess: PreprocessConfig) -> ViewPair:
    """Render the front and back of `asset` and crop both as inference does.

    Raises:
        AssetError: a render shows nothing to crop (reason "empty_render").
        BackendUnavailable: no renderer (the `render` extra) or no OpenGL context.
    """
    settings = RenderSettings(size=views.size, fov=views.fov, framing="unit_cube", shading=views.shading)
    with Renderer(asset_scene(asset), settings) as renderer:
        front, back = renderer.render([OrbitView(azimuth, elevation), OrbitView(azimuth + 180.0, elevation)])
    crops = []
    for name, rgba in (("front", front), ("back", back)):
        try:
            image, cropped, _ = square_crop(downscale(Image.fromarray(rgba, mode="RGBA"), preprocess.max_side),
                                            preprocess, name=f"{asset.source} {name} render")
        except InputError as exc:
            raise AssetError(f"{asset.source}: the {name} render shows no object to crop ({exc})",
                             "empty_render") from exc
        crops.append((cropped, image))
    logger.debug("%s: views at azimuth %.1f, elevation %.1f, crops %s", asset.source, azimuth, elevation,
                 [c[0].size for c in crops])
    return ViewPair(azimuth, elevation, crops[0][0], crops[1][0], crops[0][1], crops[1][1])


def stored_view(path: Path) -> Image.Image:
    """A dataset's RGBA render (`front.png`, `back.png`) as the models saw it at build time: "RGB" premultiplied
    onto black, bit for bit the `ViewPair.front_image` / `back_image` it was saved from.

    Raises:
        InputError: the file is missing or not a readable image.
    """
    try:
        with Image.open(path) as image:
            rgba = image.convert("RGBA")
    except FileNotFoundError as exc:
        raise InputError(f"dataset file {path} not found") from exc
    except OSError as exc:
        raise InputError(f"{path} is not a readable image: {exc}") from exc
    return premultiply_on_black(rgba)


def asset_scene(asset: Asset):
    """The normalised asset as a trimesh `Scene` in glTF's frame (+Y up), one mesh per material."""
    import trimesh
    from trimesh.visual.material import PBRMaterial

    v = asset.vertices
    vertices = np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1)  # Z-up -> Y-up, inverse of the loader's turn
    scene = trimesh.Scene()
    for index, material in enumerate(asset.materials):
        faces = asset.faces[asset.face_materials == index]
        if faces.shape[0] == 0:
            continue
        used, local = np.unique(faces, return_inverse=True)
        textured = material.base_color_texture is not None or material.metallic_roughness_texture is not None
        if asset.vertex_colors is not None and not (textured and asset.uv is not None):
            rgba = np.clip(asset.vertex_colors[used] * np.asarray(material.base_color_factor), 0, 1)
            visual = trimesh.visual.ColorVisuals(vertex_colors=np.round(rgba * 255).astype(np.uint8))
        else:
            pbr = PBRMaterial(
                baseColorFactor=material.base_color_factor, metallicFactor=material.metallic_factor,
                roughnessFactor=material.roughness_factor, alphaMode=material.alpha_mode,
                alphaCutoff=material.alpha_cutoff, doubleSided=material.double_sided,
                baseColorTexture=_image(material.base_color_texture),
                metallicRoughnessTexture=_image(material.metallic_roughness_texture),
            )
            uv = asset.uv[used] if asset.uv is not None else None
            visual = trimesh.visual.TextureVisuals(uv=uv, material=pbr)
        mesh = trimesh.Trimesh(vertices[used], local.reshape(-1, 3), visual=visual, process=False)
        scene.add_geometry(mesh, geom_name=f"material_{index}")
    return scene


def _image(pixels: np.ndarray | None) -> Image.Image | None:
    return None if pixels is None else Image.fromarray(pixels)


__all__ = ["ViewPair", "asset_scene", "draw_view_angles", "occupancy_azimuth", "render_view_pair", "stored_view"]
