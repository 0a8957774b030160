"""Offscreen rendering: face colours per view, transparent background, the normals pass, framing, failures."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import trimesh

from know3d_cli.errors import BackendUnavailable, InputError
from know3d_cli.render import (
    EXTRA, OrbitView, RenderSettings, Renderer, cardinal_views, load_pyrender, render_views, turntable_views,
)
from know3d_cli.render import backend

BOX_COLORS = {"+x": (255, 0, 0), "-x": (0, 255, 255), "+y": (0, 255, 0), "-y": (255, 0, 255), "+z": (0, 0, 255),
              "-z": (255, 255, 0)}


def colored_box(extents=(1.0, 1.0, 1.0)) -> trimesh.Trimesh:
    """A box in glTF's frame whose faces carry flat vertex colours (`BOX_COLORS`)."""
    box = trimesh.creation.box(extents)
    vertices = box.vertices[box.faces].reshape(-1, 3)
    normals = np.repeat(box.face_normals, 3, axis=0)
    colors = np.zeros((vertices.shape[0], 4), dtype=np.uint8)
    for name, rgb in BOX_COLORS.items():
        axis, sign = "xyz".index(name[1]), 1.0 if name[0] == "+" else -1.0
        colors[normals[:, axis] * sign > 0.5] = (*rgb, 255)
    return trimesh.Trimesh(vertices, np.arange(len(vertices)).reshape(-1, 3), vertex_colors=colors, process=False)


@pytest.fixture(scope="module")
def box():
    return colored_box()


def test_front_and_back_show_their_faces_and_a_transparent_background(box):
    front, back = render_views(box, [OrbitView(0.0), OrbitView(180.0)], RenderSettings(size=64, shading="flat"))
    assert front.shape == (64, 64, 4) and front.dtype == np.uint8
    np.testing.assert_array_equal(front[32, 32], [0, 0, 255, 255])  # +z face, unlit base colour
    np.testing.assert_array_equal(back[32, 32], [255, 255, 0, 255])  # -z face
    for image in (front, back):
        assert image[0, 0, 3] == 0 and image[-1, -1, 3] == 0
        assert (image[..., 3] == 0).mean() > 0.3  # the corners around the box are background


def test_lit_colours_keep_their_hue_and_every_side_is_where_azimuth_puts_it(box):
    images = render_views(box, cardinal_views(), RenderSettings(size=64))
    expected = ["+z", "+x", "-z", "-x"]  # azimuth 0, 90, 180, 270
    for image, face in zip(images, expected):
        rgb = image[32, 32, :3].astype(int)
        target = np.array(BOX_COLORS[face]) > 0
        assert rgb[target].min() > 120 and (rgb[~target].max() if (~target).any() else 0) < 40, (face, rgb)
        assert image[32, 32, 3] == 255


def test_normals_pass_encodes_camera_space_normals(box):
    views = [OrbitView(0.0, 0.0), OrbitView(90.0, 0.0), OrbitView(0.0, 30.0)]
    straight, side, above = render_views(box, views, RenderSettings(size=64), kind="normal")
    np.testing.assert_allclose(straight[32, 32, :3], [127.5, 127.5, 255], atol=2)  # facing the camera
    np.testing.assert_allclose(side[32, 32, :3], [127.5, 127.5, 255], atol=2)
    # from 30 degrees above, the front face tilts down on screen and the top face tilts towards the viewer
    s, c = np.sin(np.radians(30)), np.cos(np.radians(30))
    np.testing.assert_allclose(above[40, 32, :3], (np.array([0, -s, c]) + 1) * 127.5, atol=2)
    np.testing.assert_allclose(above[19, 32, :3], (np.array([0, c, s]) + 1) * 127.5, atol=2)
    assert above[0, 0, 3] == 0


def test_front_and_back_of_an_asymmetric_object_mirror_each_other():
    body = trimesh.creation.box((0.6, 0.6, 0.6))
    arm = trimesh.creation.box((0.4, 0.15, 0.15))
    arm.apply_translation((0.5, 0.1, 0.0))  # sticks out on +x, above the middle
    model = trimesh.util.concatenate([body, arm])
    settings = RenderSettings(size=96, projection="orthographic", framing="unit_cube")  # looks at the origin
    front, back = render_views(model, [OrbitView(0.0), OrbitView(180.0)], settings)
    front_mask, back_mask = front[..., 3] > 127, back[..., 3] > 127
    columns = np.arange(96)
    assert (front_mask * columns).sum() / front_mask.sum() > 48  # the arm is on the right seen from the front
    assert (back_mask * columns).sum() / back_mask.sum() < 48  # and on the left seen from behind
    mirrored = back_mask[:, ::-1]
    assert (front_mask & mirrored).sum() / (front_mask | mirrored).sum() > 0.97


def test_background_colour_and_framing():
    sphere = trimesh.creation.icosphere(3, radius=5.0)
    sphere.apply_translation((100.0, 0.0, 0.0))
    (image,) = render_views(sphere, [OrbitView(45.0, 10.0)], RenderSettings(size=48, background=(1.0, 0.5, 0.0)))
    assert (image[..., 3] == 255).all()
    np.testing.assert_array_equal(image[0, 0], [255, 128, 0, 255])
    assert (image[24, 24] != [255, 128, 0, 255]).any()  # the far-away sphere is framed at the centre
    (cube,) = render_views(sphere, [OrbitView(0.0)], RenderSettings(size=48, framing="unit_cube"))
    assert cube[..., 3].max() == 0  # the unit cube's frame looks at the origin, where nothing is


def test_one_renderer_serves_several_passes_and_view_lists(box):
    with Renderer(box, RenderSettings(size=32)) as renderer:
        colors = renderer.render(turntable_views(6, elevation=10.0))
        normals = renderer.render(turntable_views(6, elevation=10.0), kind="normal")
        again = renderer.render([OrbitView(0.0, 10.0)])
    assert len(colors) == len(normals) == 6
    np.testing.assert_array_equal(again[0], colors[0])
    assert not np.array_equal(colors[0], normals[0])


def test_view_helpers():
    assert [v.azimuth for v in cardinal_views(5.0)] == [0.0, 90.0, 180.0, 270.0]
    views = turntable_views(24, elevation=15.0)
    assert len(views) == 24 and views[1].azimuth == 15.0 and views[-1].azimuth == 345.0
    assert all(v.elevation == 15.0 for v in views)
    with pytest.raises(ValueError, match="projection"):
        RenderSettings(projection="fisheye")


def test_missing_pyrender_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrender", None)
    with pytest.raises(BackendUnavailable) as info:
        load_pyrender()
    assert EXTRA in str(info.value) and info.value.exit_code == 4 and "\n" not in str(info.value)


def test_no_opengl_context_is_one_line(monkeypatch, box):
    pyrender = load_pyrender()

    def fail(*args, **kwargs):
        raise RuntimeError("eglInitialize failed\nsecond line")

    monkeypatch.setattr(pyrender, "OffscreenRenderer", fail)
    monkeypatch.setattr(backend, "_CONTEXTS", {})
    with pytest.raises(BackendUnavailable) as info:
        Renderer(box, RenderSettings(size=17))
    message = str(info.value)
    assert "PYOPENGL_PLATFORM" in message and "eglInitialize failed" in message and "\n" not in message


def test_user_platform_choice_is_kept(monkeypatch):
    monkeypatch.setenv("PYOPENGL_PLATFORM", "egl")
    load_pyrender()
    monkeypatch.delenv("PYOPENGL_PLATFORM")
    load_pyrender()
    import os

    assert os.environ["PYOPENGL_PLATFORM"] == backend.DEFAULT_PLATFORM


def test_nothing_to_render_is_an_input_error():
    with pytest.raises(InputError, match="no triangle"):
        Renderer(trimesh.Scene(), RenderSettings(size=16))


def test_old_pyopengl_on_new_python_names_the_fix(monkeypatch):
    import OpenGL

    monkeypatch.setattr(sys, "version_info", (3, 12, 0, "final", 0))
    monkeypatch.setattr(OpenGL, "__version__", "3.1.0")
    with pytest.raises(BackendUnavailable, match=r"PyOpenGL>=3\.1\.7"):
        load_pyrender()
    monkeypatch.setattr(OpenGL, "__version__", "3.1.7")
    assert load_pyrender() is sys.modules["pyrender"]


def test_triton_imports_after_a_render():
    """triton (shipped with CUDA builds of torch, imported lazily by torch and diffusers) bundles its own LLVM, which
    segfaults when loaded after Mesa's llvmpipe: the renderer loads it first. In a fresh process, where nothing
    imported triton before the render."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (CPU-only torch): nothing can clash")
    code = ("import trimesh\nfrom know3d_cli.render import Renderer, RenderSettings, cardinal_views\n"
            "with Renderer(trimesh.creation.box(), RenderSettings(size=32)) as r:\n    r.render(cardinal_views())\n"
            "import triton\nprint('ok')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stderr[-1000:])


def test_a_child_forked_after_a_render_refuses_to_render_instead_of_hanging(fork, tmp_path):
    """Mesa's llvmpipe threads do not survive fork(): a forked child that renders blocks forever (a batch forked by
    the fault drill did). It must fail fast with BackendUnavailable, which previews turn into a warning."""
    import os
    import signal
    import time

    box = trimesh.creation.box()
    with Renderer(box, RenderSettings(size=16)) as renderer:
        renderer.render(cardinal_views())  # the parent has rendered: its process holds a context

    def child() -> None:
        try:
            with Renderer(box, RenderSettings(size=16)) as again:
                again.render(cardinal_views())
        except BackendUnavailable as exc:
            assert "forked" in str(exc)
            return
        raise AssertionError("rendered in a forked child")

    pid = fork(child, stderr=tmp_path / "child.err")
    deadline = time.time() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.time() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung while rendering")
    assert os.waitstatus_to_exitcode(done[1]) == 0, (tmp_path / "child.err").read_text()[-2000:]
