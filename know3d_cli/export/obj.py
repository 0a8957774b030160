"""Wavefront OBJ + MTL with the baked PBR textures: the file set DCCs (Blender, Maya, 3ds Max, Houdini) import as is.

The mesh is the GLB's (same decimation, UV atlas, bake and placement), so the two formats match vertex for vertex.
Files, for the stem `model`:

- `model.obj`: positions, UVs (`vt`, v = 0 at the image's bottom as OBJ expects), normals, one material;
- `model.mtl`: `know3d_pbr` with the PBR extension of MTL: `map_Kd` base colour, `map_Pr` roughness, `map_Pm`
  metallic (`map_d` the base colour's alpha when `export.alpha_mode` is not OPAQUE);
- `model_basecolor.<ext>` (RGB, RGBA when alpha is used), `model_roughness.<ext>`, `model_metallic.<ext>` (grey),
  in `export.texture_format`.

TRELLIS.2's PBR voxels hold base colour, metallic, roughness and alpha but no normals, so there is no normal map:
shading comes from the vertex normals. Untextured assets get the GLB's neutral grey as MTL factors.
"""

from __future__ import annotations

import io
from typing import Optional

import numpy as np

from ..config import AlphaMode, ExportConfig
from ..geometry import Asset3D
from ..timing import timed
from .glb import NEUTRAL_BASE_COLOR, NEUTRAL_ROUGHNESS, ExportMesh, encode_image, place_export_mesh, prepare_export_mesh

MATERIAL_NAME = "know3d_pbr"
_ROWS_PER_CHUNK = 65536  # bounds the temporary tuple that formats a block of lines


def to_obj(asset: Asset3D, cfg: ExportConfig, timings: Optional[dict[str, float]] = None,
           stem: str = "model") -> dict[str, bytes]:
    """Encode an asset as an OBJ file set (never touches disk).

    Returns:
        {file name: content}: `<stem>.obj` first, then `<stem>.mtl` and, for textured assets, the three textures.
    """
    mesh, _ = place_export_mesh(prepare_export_mesh(asset, cfg, timings), cfg)
    with timed(timings, "encode"):
        return write_obj(mesh, cfg, stem)


def write_obj(mesh: ExportMesh, cfg: ExportConfig, stem: str = "model") -> dict[str, bytes]:
    """Serialise an `ExportMesh` (already placed) as `<stem>.obj`, `<stem>.mtl` and its textures."""
    textured = mesh.texcoords is not None and mesh.base_color is not None and mesh.metallic_roughness is not None
    textures: dict[str, bytes] = {}
    if textured:
        ext = cfg.texture_format
        alpha = cfg.alpha_mode != AlphaMode.OPAQUE
        base = mesh.base_color if alpha else mesh.base_color[:, :, :3]
        textures = {
            f"{stem}_basecolor.{ext}": encode_image(base, ext),
            f"{stem}_roughness.{ext}": encode_image(mesh.metallic_roughness[:, :, 1], ext),  # glTF: G = roughness
            f"{stem}_metallic.{ext}": encode_image(mesh.metallic_roughness[:, :, 2], ext),  # B = metallic
        }
    files = {f"{stem}.obj": _obj_text(mesh, f"{stem}.mtl", textured).encode("utf-8"),
             f"{stem}.mtl": _mtl_text(list(textures), cfg).encode("utf-8")}
    files.update(textures)
    return files


def _obj_text(mesh: ExportMesh, mtl_name: str, textured: bool) -> str:
    corners = mesh.faces.astype(np.int64) + 1  # OBJ indices start at 1
    parts = [f"# know3d\nmtllib {mtl_name}\no asset\n", _lines("v %.6f %.6f %.6f", mesh.positions)]
    if textured:
        uv = np.stack([mesh.texcoords[:, 0], 1.0 - mesh.texcoords[:, 1]], axis=1)  # glTF v = 0 is the top row
        parts.append(_lines("vt %.6f %.6f", uv))
        faces = _lines("f %d/%d/%d %d/%d/%d %d/%d/%d", corners[:, [0, 0, 0, 1, 1, 1, 2, 2, 2]])
    else:
        faces = _lines("f %d//%d %d//%d %d//%d", corners[:, [0, 0, 1, 1, 2, 2]])
    parts += [_lines("vn %.5f %.5f %.5f", mesh.normals), f"usemtl {MATERIAL_NAME}\ns 1\n", faces]
    return "".join(parts)


def _mtl_text(texture_names: list[str], cfg: ExportConfig) -> str:
    lines = ["# know3d PBR material (MTL PBR extension: Pr roughness, Pm metallic)", f"newmtl {MATERIAL_NAME}",
             "Ka 0 0 0", "Ks 0 0 0", "illum 1", "d 1"]
    if texture_names:
        base, roughness, metallic = texture_names
        lines += ["Kd 1 1 1", "Pr 1", "Pm 1", f"map_Kd {base}", f"map_Pr {roughness}", f"map_Pm {metallic}"]
        if cfg.alpha_mode != AlphaMode.OPAQUE:
            lines.append(f"map_d {base}")
    else:
        r, g, b, _ = NEUTRAL_BASE_COLOR
        lines += [f"Kd {r} {g} {b}", f"Pr {NEUTRAL_ROUGHNESS}", "Pm 0"]
    return "\n".join(lines) + "\n"


def _lines(pattern: str, values: np.ndarray) -> str:
    """One printf-style `pattern` line per row of `values` (N, K), formatted in blocks (C speed, bounded memory)."""
    line = pattern + "\n"
    out = []
    for start in range(0, values.shape[0], _ROWS_PER_CHUNK):
        block = values[start:start + _ROWS_PER_CHUNK]
        out.append((line * block.shape[0]) % tuple(block.ravel().tolist()))
    return "".join(out)


__all__ = ["MATERIAL_NAME", "to_obj", "write_obj"]
