"""A procedural family of textured 3D assets whose one distinguishing part sits only on the back.

Each asset is a base body (box, cylinder, sphere, capsule) in one of several proportions, textured with a striped
colour, plus at most one part on its back (handle, pocket, fin, strap, hook, knob, or none), in its own colour. The
part lies inside the body's silhouette seen from the front, so a front render cannot show it; the caption names it.
This is the data of the back-part benchmark (`scripts/bench_backpart.py`): the front view is the same for every part
of a base, and only the back text tells them apart.

Frame: glTF's, +Y up, the front faces +Z (render azimuth 0), the part sticks out towards -Z. Files are GLB (the mesh
carries UVs and a base-colour texture), listed in a CSV with the columns `know3d data build` reads
(`asset,id,caption`).
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_write

logger = logging.getLogger(__name__)

BODIES = ("box", "cylinder", "sphere", "capsule")
# (width, height, depth) of each proportion, before the body's own shape; the longest side is ~1
PROPORTIONS = {"tall": (0.62, 1.0, 0.5), "wide": (1.0, 0.7, 0.55)}
PARTS = ("handle", "pocket", "fin", "strap", "hook", "knob", "none")
CAPTIONS = {  # what the back text says of each part (empty: no part, the editor gets P_view alone)
    "handle": "a large round handle",
    "pocket": "a flat rectangular pocket",
    "fin": "a tall thin fin",
    "strap": "two vertical straps",
    "hook": "a hook pointing up",
    "knob": "a round knob",
    "none": "",
}
PALETTE = ((200, 60, 50), (60, 130, 200), (70, 160, 80), (220, 170, 40), (150, 80, 170), (230, 120, 40),
           (90, 90, 100), (40, 160, 160))
TEXTURE_SIDE = 64


@dataclass(frozen=True)
class AssetSpec:
    """One member of the family."""

    body: str  # one of BODIES
    proportion: str  # a key of PROPORTIONS
    part: str  # one of PARTS
    colour: int  # index into PALETTE (the body; the part takes the next colour)

    @property
    def base(self) -> str:
        """The base body and proportion, e.g. `cylinder-tall` (what a front render shows)."""
        return f"{self.body}-{self.proportion}"

    @property
    def id(self) -> str:
        return f"{self.base}-{self.part}-c{self.colour}"

    @property
    def caption(self) -> str:
        return CAPTIONS[self.part]


def family(bodies: tuple[str, ...] = BODIES, proportions: tuple[str, ...] = tuple(PROPORTIONS),
           parts: tuple[str, ...] = PARTS, seed: int = 0) -> list[AssetSpec]:
    """Every base x part combination once, each with a colour drawn from `seed`."""
    rng = np.random.default_rng(seed)
    return [AssetSpec(body, proportion, part, int(rng.integers(len(PALETTE))))
            for body in bodies for proportion in proportions for part in parts]


def held_out_split(specs: list[AssetSpec], per_base: int = 1) -> tuple[list[AssetSpec], list[AssetSpec]]:
    """(train, held-out): for the i-th base, the parts at positions i, i + 1, ... (mod the parts listed) are held
    out, so each part is held out on some bases and trained on the others, and each base is trained with its other
    parts."""
    bases = sorted({s.base for s in specs}, key=[s.base for s in specs].index)
    parts = sorted({s.part for s in specs}, key=[s.part for s in specs].index)
    held = {(base, parts[(i + j) % len(parts)]) for i, base in enumerate(bases) for j in range(per_base)}
    train = [s for s in specs if (s.base, s.part) not in held]
    test = [s for s in specs if (s.base, s.part) in held]
    return train, test


def body_extent(spec: AssetSpec) -> tuple[float, float, float]:
    """Half sizes (x, y, z) of the body."""
    w, h, d = PROPORTIONS[spec.proportion]
    if spec.body == "sphere":  # an ellipsoid with the proportion's axes
        return w / 2, h / 2, d / 2
    if spec.body in ("cylinder", "capsule"):  # round in x-z: the smaller of width and depth
        r = min(w, d) / 2
        return r, h / 2, r
    return w / 2, h / 2, d / 2


def asset_mesh(spec: AssetSpec):
    """The asset as a trimesh `Scene`: a textured body and its back part (if any), glTF frame."""
    import trimesh

    scene = trimesh.Scene()
    body = _body(spec)
    _apply_texture(body, PALETTE[spec.colour], stripes=spec.colour % 3 + 2)
    scene.add_geometry(body, node_name="body", geom_name="body")
    if spec.part != "none":
        part = _part(spec)
        colour = PALETTE[(spec.colour + 3) % len(PALETTE)]
        _apply_texture(part, colour, stripes=0)
        scene.add_geometry(part, node_name=spec.part, geom_name=spec.part)
    return scene


def glb_bytes(spec: AssetSpec) -> bytes:
    return asset_mesh(spec).export(file_type="glb")


def write_family(specs: list[AssetSpec], out: Path) -> Path:
    """Write `<out>/<id>.glb` for every spec and `<out>/assets.csv` (asset, id, caption); returns the CSV path."""
    out = Path(out)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["asset", "id", "caption"])
    for spec in specs:
        atomic_write(out / f"{spec.id}.glb", glb_bytes(spec))
        writer.writerow([f"{spec.id}.glb", spec.id, spec.caption])
    manifest = out / "assets.csv"
    atomic_write(manifest, rows.getvalue().encode())
    logger.info("wrote %d procedural assets to %s", len(specs), out)
    return manifest


# ---------------------------------------------------------------------------------------------------- geometry
def _body(spec: AssetSpec):
    import trimesh

    ex, ey, ez = body_extent(spec)
    if spec.body == "box":
        return trimesh.creation.box(extents=(2 * ex, 2 * ey, 2 * ez))
    if spec.body == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
        mesh.apply_scale((ex, ey, ez))
        return mesh
    if spec.body == "cylinder":
        return _along_y(trimesh.creation.cylinder(radius=ex, height=2 * ey, sections=40))
    if spec.body == "capsule":
        return _along_y(trimesh.creation.capsule(height=2 * ey - 2 * ex, radius=ex, count=[24, 24]))
    raise ValueError(f"unknown body {spec.body!r}; expected one of {', '.join(BODIES)}")


def _part(spec: AssetSpec):
    """The back part, touching the body's back (z = -ez) and inside its front silhouette."""
    import trimesh
    from trimesh.transformations import rotation_matrix, translation_matrix

    ex, ey, ez = body_extent(spec)
    back = -ez
    if spec.part == "handle":  # a ring in the y-z plane, its front half inside the body
        r = 0.55 * min(ey, 0.3)
        mesh = trimesh.creation.torus(major_radius=r, minor_radius=0.045, major_sections=32, minor_sections=10)
        mesh.apply_transform(rotation_matrix(np.pi / 2, (0, 1, 0)))
        mesh.apply_translation((0, 0, back - r + 0.08))
        return mesh
    if spec.part == "pocket":  # a flat slab low on the back
        return trimesh.creation.box(extents=(1.2 * ex, 0.8 * ey, 0.12),
                                    transform=translation_matrix((0, -0.35 * ey, back - 0.03)))
    if spec.part == "fin":  # a thin plate in the y-z plane, deepest at the top
        depth, height, half = 0.3, 1.3 * ey, 0.025
        outline = [(0.0, -height / 2), (-0.35 * depth, -height / 2), (-depth, height / 2), (0.0, height / 2)]  # (z, y)
        corners = [(x, y, back + 0.04 + z) for z, y in outline for x in (-half, half)]
        return trimesh.convex.convex_hull(np.asarray(corners))
    if spec.part == "strap":  # two vertical bars off the back, left and right
        bars = [trimesh.creation.box(extents=(0.09, 1.4 * ey, 0.08),
                                     transform=translation_matrix((side * 0.5 * ex, 0, back - 0.02)))
                for side in (-1, 1)]
        return trimesh.util.concatenate(bars)
    if spec.part == "hook":  # a rod backwards, then up
        length, rise = 0.28, 0.22
        rod = trimesh.creation.cylinder(radius=0.04, height=length + 0.04, sections=16)  # along z
        rod.apply_translation((0, 0.25 * ey, back - length / 2 + 0.02))
        up = _along_y(trimesh.creation.cylinder(radius=0.04, height=rise, sections=16))
        up.apply_translation((0, 0.25 * ey + rise / 2 - 0.02, back - length))
        return trimesh.util.concatenate([rod, up])
    if spec.part == "knob":
        mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.15)
        mesh.apply_translation((0, 0.1 * ey, back - 0.06))
        return mesh
    raise ValueError(f"unknown part {spec.part!r}; expected one of {', '.join(PARTS)}")


def _along_y(mesh):
    """A trimesh primitive built along z, turned to stand along y."""
    from trimesh.transformations import rotation_matrix

    mesh.apply_transform(rotation_matrix(-np.pi / 2, (1, 0, 0)))
    return mesh


def _apply_texture(mesh, colour: tuple[int, int, int], stripes: int) -> None:
    """Cylindrical UVs and a base-colour texture: `colour` with `stripes` darker horizontal bands (0: plain)."""
    import trimesh
    from PIL import Image

    v = mesh.vertices
    u = np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi) + 0.5
    span = max(np.ptp(v[:, 1]), 1e-6)
    uv = np.stack([u, (v[:, 1] - v[:, 1].min()) / span], axis=1)
    rows = np.arange(TEXTURE_SIDE)[:, None]
    shade = np.where((rows * max(stripes, 1) * 2 // TEXTURE_SIDE) % 2 == 1, 0.75, 1.0) if stripes else np.ones_like(rows)
    pixels = np.clip(np.asarray(colour, np.float32)[None, None] * shade[..., None], 0, 255).astype(np.uint8)
    image = Image.fromarray(np.broadcast_to(pixels, (TEXTURE_SIDE, TEXTURE_SIDE, 3)).copy())
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image, metallicFactor=0.0, roughnessFactor=0.8)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)


__all__ = ["BODIES", "CAPTIONS", "PALETTE", "PARTS", "PROPORTIONS", "AssetSpec", "asset_mesh", "body_extent", "family",
           "glb_bytes", "held_out_split", "write_family"]
