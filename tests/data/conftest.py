"""Procedural assets for the data tests: textured quads, coloured boxes, written as real GLB/OBJ/PLY files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial


def textured_quad(texture: np.ndarray, **material) -> trimesh.Trimesh:
    """A unit square in the z = 0 plane (glTF frame: facing +z), UV (0, 0) at (-0.5, -0.5), UV (1, 1) at (0.5, 0.5)."""
    vertices = np.array([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.5, 0.5, 0.0], [-0.5, 0.5, 0.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    mat = PBRMaterial(baseColorTexture=Image.fromarray(texture), **material)
    return trimesh.Trimesh(vertices, faces, visual=trimesh.visual.TextureVisuals(uv=uv, material=mat), process=False)


def gradient_texture(size: int = 64) -> np.ndarray:
    """(size, size, 4) uint8: red grows with u (left to right), green with v (bottom to top), blue 64, alpha 255."""
    t = (np.arange(size) + 0.5) / size
    red = np.broadcast_to(t[None, :], (size, size))
    green = np.broadcast_to(t[::-1, None], (size, size))  # image row 0 is the top, v = 1
    rgba = np.stack([red * 255, green * 255, np.full((size, size), 64.0), np.full((size, size), 255.0)], axis=-1)
    return np.round(rgba).astype(np.uint8)


def colored_box(colors: dict[str, tuple[int, int, int]], extents=(1.0, 1.0, 1.0)) -> trimesh.Trimesh:
    """A box whose 6 faces carry flat vertex colours, keyed "+x", "-x", "+y", "-y", "+z", "-z" (glTF frame)."""
    box = trimesh.creation.box(extents)
    vertices = box.vertices[box.faces].reshape(-1, 3)  # own vertices per face: colours do not blend
    faces = np.arange(vertices.shape[0]).reshape(-1, 3)
    normals = np.repeat(box.face_normals, 3, axis=0)
    vertex_colors = np.zeros((vertices.shape[0], 4), dtype=np.uint8)
    for name, rgb in colors.items():
        axis = "xyz".index(name[1])
        sign = 1.0 if name[0] == "+" else -1.0
        vertex_colors[normals[:, axis] * sign > 0.5] = (*rgb, 255)
    return trimesh.Trimesh(vertices, faces, vertex_colors=vertex_colors, process=False)


BOX_COLORS = {"+x": (255, 0, 0), "-x": (0, 255, 255), "+y": (0, 255, 0), "-y": (255, 0, 255), "+z": (0, 0, 255),
              "-z": (255, 255, 0)}


@pytest.fixture
def write_asset(tmp_path):
    """`write_asset(geometry, name)`: export a trimesh Trimesh/Scene under tmp_path, return the path."""

    def write(geometry, name: str) -> Path:
        path = tmp_path / name
        geometry.export(path)
        return path

    return write


def _textured(mesh: trimesh.Trimesh, colour: tuple[int, int, int]) -> trimesh.Trimesh:
    """`mesh` with a striped base-colour texture (white stripes on `colour`), UVs from its x and z."""
    texture = np.zeros((16, 16, 4), np.uint8)
    texture[...] = (*colour, 255)
    texture[::4, :, :3] = 255
    xz = mesh.vertices[:, [0, 2]]
    uv = (xz - xz.min(axis=0)) / np.ptp(xz, axis=0).clip(1e-6)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=PBRMaterial(baseColorTexture=Image.fromarray(texture)))
    return mesh


def build_assets(folder: Path) -> dict[str, Path]:
    """Three small textured assets (thin, so their O-Voxels at 512 are small and fast): a rod (GLB), a ring (OBJ with
    its .mtl and texture) and a hook, a post with an arm on one side (GLB)."""
    folder.mkdir(parents=True, exist_ok=True)
    rod = _textured(trimesh.creation.cylinder(0.04, 1.0, sections=16), (200, 40, 40))
    ring = _textured(trimesh.creation.torus(0.4, 0.02, major_sections=48, minor_sections=8), (40, 200, 40))
    post = trimesh.creation.cylinder(0.03, 0.9, sections=12)
    arm = trimesh.creation.cylinder(0.025, 0.4, sections=12)
    arm.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    arm.apply_translation((0.0, -0.2, 0.3))
    hook = _textured(trimesh.util.concatenate([post, arm]), (40, 40, 200))
    paths = {"rod": folder / "rod.glb", "ring": folder / "ring.obj", "hook": folder / "hook.glb"}
    for name, mesh in (("rod", rod), ("ring", ring), ("hook", hook)):
        mesh.export(paths[name])
    return paths
