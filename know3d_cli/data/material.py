"""PBR materials of a loaded asset, read from trimesh's glTF/OBJ/PLY materials.

Values follow glTF's metallic-roughness model and the upstream TRELLIS.2 toolkit's trimesh path: a factor missing
from a PBR material takes the glTF default (base colour 1, metallic 1, roughness 1); a part with no material at all
gets the toolkit's default material (grey 0.8, metallic 0, roughness 0.5, opaque). Colours stay in the encoding the
file stores them in (textures sRGB-encoded bytes, factors and vertex colours as given), as upstream does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

logger = logging.getLogger(__name__)

ALPHA_MODES = ("OPAQUE", "MASK", "BLEND")


@dataclass(frozen=True, eq=False)
class Material:
    base_color_factor: tuple[float, float, float, float]  # RGBA in [0, 1]
    metallic_factor: float
    roughness_factor: float
    alpha_mode: str  # OPAQUE | MASK | BLEND
    alpha_cutoff: float  # MASK threshold on the final alpha
    base_color_texture: np.ndarray | None = None  # (H, W, 4) uint8 RGBA, row 0 = top (v = 1)
    metallic_roughness_texture: np.ndarray | None = None  # (H, W, 3) uint8: G = roughness, B = metallic
    double_sided: bool = False
    name: str = ""


DEFAULT_MATERIAL = Material(
    base_color_factor=(0.8, 0.8, 0.8, 1.0), metallic_factor=0.0, roughness_factor=0.5, alpha_mode="OPAQUE",
    alpha_cutoff=0.5, name="default",
)


def material_from_trimesh(material, max_texture_side: int) -> Material:
    """Convert a trimesh `PBRMaterial` or `SimpleMaterial` (OBJ/MTL) to a `Material`.

    A SimpleMaterial becomes its trimesh PBR equivalent (diffuse -> base colour, glossiness -> roughness,
    metallic 0). Textures longer than `max_texture_side` are downscaled with an area filter.
    """
    from trimesh.visual.material import PBRMaterial, SimpleMaterial

    if isinstance(material, SimpleMaterial):
        pbr = material.to_pbr()
        metallic = 0.0  # MTL has no metalness; to_pbr leaves it unset, which glTF would read as 1
    elif isinstance(material, PBRMaterial):
        pbr = material
        metallic = _factor(pbr.metallicFactor, 1.0)
    else:
        logger.debug("material of type %s has no PBR data; using the default material", type(material).__name__)
        return DEFAULT_MATERIAL
    alpha_mode = str(pbr.alphaMode or "OPAQUE").upper()
    if alpha_mode not in ALPHA_MODES:
        alpha_mode = "OPAQUE"
    return Material(
        base_color_factor=_color_factor(pbr.baseColorFactor),
        metallic_factor=metallic,
        roughness_factor=_factor(pbr.roughnessFactor, 1.0),
        alpha_mode=alpha_mode,
        alpha_cutoff=_factor(pbr.alphaCutoff, 0.5),
        base_color_texture=_texture(pbr.baseColorTexture, "RGBA", max_texture_side),
        metallic_roughness_texture=_texture(pbr.metallicRoughnessTexture, "RGB", max_texture_side),
        double_sided=bool(getattr(pbr, "doubleSided", False)),
        name=str(getattr(pbr, "name", None) or ""),
    )


def _factor(value, default: float) -> float:
    return default if value is None else float(value)


def _color_factor(value) -> tuple[float, float, float, float]:
    """trimesh keeps baseColorFactor as uint8 RGBA (or None); return floats in [0, 1]."""
    if value is None:
        return (1.0, 1.0, 1.0, 1.0)
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if np.issubdtype(np.asarray(value).dtype, np.integer) or arr.max(initial=0.0) > 1.0:
        arr = arr / 255.0
    rgba = np.ones(4)
    rgba[: min(4, arr.size)] = arr[:4]
    return tuple(float(v) for v in np.clip(rgba, 0.0, 1.0))  # type: ignore[return-value]


def _texture(image, mode: str, max_side: int) -> np.ndarray | None:
    """PIL image (or None) -> (H, W, C) uint8 in `mode`, at most `max_side` pixels on its longer side."""
    if image is None:
        return None
    pixels = np.asarray(image.convert(mode), dtype=np.uint8)
    height, width = pixels.shape[:2]
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        logger.debug("texture %dx%d downscaled to %dx%d", width, height, *size)
    return np.ascontiguousarray(pixels)


__all__ = ["ALPHA_MODES", "DEFAULT_MATERIAL", "Material", "material_from_trimesh"]
