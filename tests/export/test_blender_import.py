"""Blender imports the exports as they are: GLB and OBJ with their PBR textures wired, every format standing on the
ground at the asked height.

Blender's Python module (`bpy`, ~1 GB, Python 3.11 only for 5.0.1) lives in its own virtual environment, never in
the test one: the test runs `blender_import.py` with the interpreter named by `KNOW3D_BPY_PYTHON`, or with
`.ci/bpy/bin/python` (which `.ci/run` creates), and is skipped when there is neither.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from know3d_cli.config import ExportConfig, ExportFormat
from know3d_cli.export import encode_mesh

REPO_ROOT = Path(__file__).resolve().parents[2]
BPY_ENV = "KNOW3D_BPY_PYTHON"
BPY_VENV_PYTHON = REPO_ROOT / ".ci" / "bpy" / "bin" / "python"
SCRIPT = Path(__file__).with_name("blender_import.py")
TEXTURE_SIZE = 64
HEIGHT = 1.8  # metres


@pytest.fixture(scope="module")
def bpy_python() -> str:
    python = os.environ.get(BPY_ENV) or (str(BPY_VENV_PYTHON) if BPY_VENV_PYTHON.exists() else None)
    if python is None:
        pytest.skip(f"no Python with Blender's bpy: set {BPY_ENV} or run .ci/run (it creates {BPY_VENV_PYTHON})")
    return python


@pytest.fixture(scope="module")
def blender_view(bpy_python, make_blob, tmp_path_factory):
    """Each format of one textured asset (origin base, HEIGHT metres), as Blender imports it."""
    folder = tmp_path_factory.mktemp("blender")
    asset = make_blob(centre=(0.1, 0.2, 0.3), radius=0.2)
    exported = {}
    for file_type in ("glb", "obj", "ply"):
        model = encode_mesh(asset, ExportConfig(format=ExportFormat(file_type), faces=1500,
                                                texture_size=TEXTURE_SIZE, height=HEIGHT))
        for name, data in model.files.items():
            (folder / name).write_bytes(data)
        exported[file_type] = model
    out = folder / "blender.json"
    paths = [str(folder / model.model_file) for model in exported.values()]
    run = subprocess.run([bpy_python, str(SCRIPT), str(out), *paths], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    return {file_type: report[str(folder / model.model_file)] for file_type, model in exported.items()}, exported


def links_into(material: dict, socket: str) -> list[list]:
    return [link for link in material["links"] if link[4] == socket]


def test_glb_imports_with_its_pbr_textures(blender_view):
    view, exported = blender_view
    (obj,) = view["glb"]
    assert obj["faces"] == exported["glb"].faces
    (material,) = obj["materials"]
    assert material["name"] == "know3d_pbr"
    (base,) = links_into(material, "Base Color")
    assert base[0] == "ShaderNodeTexImage" and base[2] == [TEXTURE_SIZE, TEXTURE_SIZE]
    # glTF packs roughness (G) and metallic (B) into one texture; Blender splits its channels
    images = [link for link in material["links"] if link[0] == "ShaderNodeTexImage"]
    assert len({link[1] for link in images}) == 2
    assert links_into(material, "Roughness") and links_into(material, "Metallic")


def test_obj_imports_with_its_mtl_textures(blender_view):
    view, exported = blender_view
    (obj,) = view["obj"]
    assert obj["faces"] == exported["obj"].faces
    (material,) = obj["materials"]
    expected = {"Base Color": "model_basecolor.png", "Roughness": "model_roughness.png",
                "Metallic": "model_metallic.png"}
    for socket, image in expected.items():
        (link,) = links_into(material, socket)
        assert link[0] == "ShaderNodeTexImage" and link[1] == image and link[2] == [TEXTURE_SIZE, TEXTURE_SIZE]


@pytest.mark.parametrize("file_type", ["glb", "obj", "ply"])
def test_every_format_stands_on_the_ground_at_its_height(blender_view, file_type):
    """Blender is Z up: the asset's lowest point is on z = 0, it is HEIGHT tall and centred on the z axis, and the
    three formats coincide (the glTF / OBJ importers turn Y up into Z up; PLY is imported with Up Axis = Y)."""
    view, exported = blender_view
    (obj,) = view[file_type]
    lower, upper = np.array(obj["min"]), np.array(obj["max"])
    assert lower[2] == pytest.approx(0.0, abs=1e-5) and upper[2] - lower[2] == pytest.approx(HEIGHT, rel=1e-5)
    np.testing.assert_allclose((lower + upper)[:2] / 2, 0.0, atol=1e-5)
    (glb,) = view["glb"]
    np.testing.assert_allclose([lower, upper], [glb["min"], glb["max"]], atol=1e-5)
