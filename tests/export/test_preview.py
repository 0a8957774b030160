"""preview.png and turntable.webp: the exported files are read back and rendered (pyrender, headless EGL on Mesa).

Small tiles keep these fast; every test uses the same size so the process shares one OpenGL context.
"""

from __future__ import annotations

import dataclasses
import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from know3d_cli.config import ExportConfig, ExportFormat
from know3d_cli.export import encode_mesh
from know3d_cli.export.preview import PREVIEW_FILE, TURNTABLE_FILE, load_exported, render_previews
from know3d_cli.export.preview_mesh import simplify_mesh

SIZE = 96  # preview tile side
PAD, TITLE = 2, 12  # contact-sheet layout (render.contact_sheet)
BACKGROUND = (237, 237, 237)


def config(**overrides) -> ExportConfig:
    return ExportConfig(**{"faces": 3000, "texture_size": 64, "preview_size": SIZE, **overrides})


def tile(sheet: np.ndarray, row: int, col: int) -> np.ndarray:
    """(SIZE, SIZE, 3) tile of the preview sheet: row 0 colour, row 1 normals; columns front, right, back, left."""
    top, left = TITLE + PAD + row * (SIZE + PAD), PAD + col * (SIZE + PAD)
    return sheet[top:top + SIZE, left:left + SIZE]


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def two_tone(make_blob):
    """A ball whose voxels are red above its centre and blue below (TRELLIS.2 z up = glTF y up)."""
    asset = make_blob(resolution=48)
    above = (asset.voxel_coords[:, 2].float() + 0.5) / asset.resolution - 0.5 > 0
    attrs = asset.voxel_attrs.clone()
    attrs[~above, 0:3] = torch.tensor([0.0, 0.0, 1.0])
    return dataclasses.replace(asset, voxel_attrs=attrs)


@pytest.mark.parametrize("file_type", ["glb", "obj", "ply"])
def test_preview_shows_colour_and_normals_from_four_sides(two_tone, file_type):
    exported = encode_mesh(two_tone, config(format=ExportFormat(file_type)))
    timings: dict[str, float] = {}
    previews = render_previews(exported, config(format=ExportFormat(file_type)), timings)
    assert list(previews.files) == [PREVIEW_FILE] and previews.warnings == []
    assert previews.info["rendered_faces"] == previews.info["source_faces"] == exported.faces  # under the budget
    assert {"preview_mesh", "preview"} <= set(timings)
    sheet = decode(previews.files[PREVIEW_FILE])
    assert sheet.shape == (TITLE + 2 * (SIZE + PAD) + PAD, 4 * (SIZE + PAD) + PAD, 3)
    for col in range(4):
        colour, normals = tile(sheet, 0, col), tile(sheet, 1, col)
        assert (colour[2, 2] == BACKGROUND).all() and (normals[2, 2] == BACKGROUND).all()
        upper, lower = colour[SIZE // 2 - 12, SIZE // 2], colour[SIZE // 2 + 14, SIZE // 2]
        assert upper[0] > 2 * upper[2] and lower[2] > 2 * lower[0], (col, upper, lower)  # red on top, blue below
        nx, ny, nz = normals[SIZE // 2, SIZE // 2]  # the ball's point on the line of sight faces the camera
        assert abs(nx - 128) < 16 and abs(ny - 128) < 16 and nz > 240, (col, normals[SIZE // 2, SIZE // 2])


def test_turntable_is_a_looping_animated_webp(two_tone):
    cfg = config(preview=False, turntable=True, turntable_frames=6, turntable_fps=10.0)
    previews = render_previews(encode_mesh(two_tone, cfg), cfg)
    assert list(previews.files) == [TURNTABLE_FILE]
    webp = Image.open(io.BytesIO(previews.files[TURNTABLE_FILE]))
    assert webp.format == "WEBP" and webp.is_animated and webp.n_frames == 6
    assert webp.info["loop"] == 0 and webp.size == (SIZE, SIZE)
    webp.seek(1)
    webp.load()
    assert webp.info["duration"] == 100  # ms per frame at 10 fps
    assert not np.array_equal(np.asarray(webp.convert("RGB")), np.asarray(Image.open(io.BytesIO(
        previews.files[TURNTABLE_FILE])).convert("RGB")))  # the model turns


def test_no_preview_asked_renders_nothing(two_tone):
    cfg = config(preview=False)
    assert render_previews(encode_mesh(two_tone, cfg), cfg).files == {}


def test_missing_renderer_is_one_warning_and_no_file(two_tone, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrender", None)  # as if the render extra were not installed
    cfg = config(turntable=True)
    previews = render_previews(encode_mesh(two_tone, cfg), cfg)
    assert previews.files == {} and previews.info == {}
    (warning,) = previews.warnings
    assert "\n" not in warning and 'pip install "know3d[render]"' in warning and "export.preview=false" in warning


def test_large_meshes_render_a_decimated_copy_with_the_texture_intact(two_tone):
    """A copy decimated to the preview budget (4x here, about what a 500k-face export gets) looks like the full mesh:
    the same silhouette (no tears along the UV seams) and the same colours from every side. Vertices keep their UVs
    where the decimator moves them, so the red/blue border wobbles by up to about an edge length."""
    full = config(faces=8000, preview_faces=100_000)
    exported = encode_mesh(two_tone, full)
    reference = render_previews(exported, full)
    light = render_previews(exported, dataclasses.replace(full, preview_faces=2000))
    assert light.info["source_faces"] == exported.faces == 8000
    assert light.info["rendered_faces"] <= 2000
    ref, dec = decode(reference.files[PREVIEW_FILE]), decode(light.files[PREVIEW_FILE])
    for col in range(4):
        a, b = tile(ref, 0, col), tile(dec, 0, col)
        inside_a, inside_b = (a != BACKGROUND).any(axis=2), (b != BACKGROUND).any(axis=2)
        assert (inside_a != inside_b).mean() < 0.01  # silhouettes agree
        difference = np.abs(a[inside_a & inside_b] - b[inside_a & inside_b]).max(axis=1)
        assert np.median(difference) <= 3 and (difference > 60).mean() < 0.06


def test_simplify_keeps_seams_and_uvs(two_tone):
    scene = load_exported(encode_mesh(two_tone, config(faces=8000)))
    (mesh,) = scene.geometry.values()
    light = simplify_mesh(mesh, 1000)
    assert len(light.faces) < len(mesh.faces) // 3
    # seam vertices are kept where they were, with their UVs: every (position, uv) of a seam survives unchanged
    def seam_keys(m):
        edges = np.sort(m.edges_sorted, axis=1)
        unique, counts = np.unique(edges, axis=0, return_counts=True)
        seam = np.unique(unique[counts == 1])
        return {tuple(np.round(np.r_[m.vertices[v], m.visual.uv[v]], 6)) for v in seam}
    assert seam_keys(light) == seam_keys(mesh)


@pytest.mark.parametrize("override", ["export.preview_size=8", "export.preview_faces=10", "export.turntable_frames=1",
                                      "export.turntable_fps=0"])
def test_invalid_preview_settings_are_config_errors(override):
    from know3d_cli.config import load_config
    from know3d_cli.errors import ConfigError

    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_config([override])
