"""The optional OpenGL renderer (pyrender): imported on first use, headless through EGL unless the user chose.

pyrender is the `render` extra (`pip install "know3d[render]"`). `PYOPENGL_PLATFORM` picks the OpenGL platform
before PyOpenGL is first imported; unless the user set it, it becomes `egl`, which renders headless on Mesa's
llvmpipe (CPU) and on the NVIDIA driver's EGL (GPU; `EGL_DEVICE_ID` picks the device). `osmesa` also works where
Mesa's OSMesa and a PyOpenGL >= 3.1.5 are installed. On Python 3.12+ pyrender's pinned PyOpenGL 3.1.0 cannot upload
textures; PyOpenGL >= 3.1.7 is needed there. Failures are one-line `BackendUnavailable` errors (exit 4).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

from ..errors import BackendUnavailable

logger = logging.getLogger(__name__)

EXTRA = 'pip install "know3d[render]"'
DEFAULT_PLATFORM = "egl"
_CONTEXT_FIX = ("install Mesa's EGL and GL (Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri "
                "libglu1-mesa) or an NVIDIA driver, or set PYOPENGL_PLATFORM=osmesa with libosmesa6")
# PyOpenGL 3.1.0 (pyrender's pin) cannot pass texture ids through ctypes on Python 3.12+; 3.1.7 can.
_PYOPENGL_FOR_312 = (3, 1, 7)


def load_pyrender():
    """Import pyrender with a headless OpenGL platform.

    Raises:
        BackendUnavailable: pyrender is not installed, or PyOpenGL cannot load the platform's libraries.
    """
    platform = os.environ.setdefault("PYOPENGL_PLATFORM", DEFAULT_PLATFORM)
    _load_triton_first()
    try:
        import pyrender
    except ModuleNotFoundError as exc:
        if exc.name in ("pyrender", "OpenGL"):
            raise BackendUnavailable(f"rendering needs the optional renderer pyrender; {EXTRA}") from exc
        raise BackendUnavailable(f"pyrender cannot be imported ({exc}); {EXTRA}") from exc
    except Exception as exc:  # PyOpenGL raises whatever loading the platform's libraries raises
        raise BackendUnavailable(f"OpenGL platform {platform!r} is unusable ({type(exc).__name__}: "
                                 f"{_first_line(exc)}); {_CONTEXT_FIX}") from exc
    import OpenGL

    if sys.version_info >= (3, 12) and _version(OpenGL.__version__) < _PYOPENGL_FOR_312:
        raise BackendUnavailable(f"PyOpenGL {OpenGL.__version__} (pinned by pyrender) cannot upload textures on Python "
                                 f"{sys.version_info[0]}.{sys.version_info[1]}; pip install \"PyOpenGL>=3.1.7\" "
                                 "after the render extra (pip's warning about pyrender's pin is expected)")
    return pyrender


# One offscreen renderer per image size for the whole process. pyrender's EGL contexts share the process's default
# EGL display, and deleting one terminates that display under every other; keeping them also saves creating a
# context (and compiling shaders) for every asset. Contexts are bound to the thread that renders: not thread-safe.
_CONTEXTS: dict[tuple[int, int], object] = {}
_INHERITED: list[bool] = [False]  # set in a child forked after this process rendered


def _after_fork_in_child() -> None:
    """A forked child gets the parent's OpenGL driver state but not its threads (Mesa llvmpipe's rasteriser pool),
    so any further GL call, even a new context, blocks forever: forget the contexts and refuse to render."""
    if _CONTEXTS:
        _CONTEXTS.clear()
        _INHERITED[0] = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def offscreen_renderer(pyrender, width: int, height: int):
    """The process's pyrender `OffscreenRenderer` of this size (created on first use).

    Raises:
        BackendUnavailable: no OpenGL context can be created, or this is a child forked after its parent rendered.
    """
    if _INHERITED[0]:
        raise BackendUnavailable("this process was forked from one that had already rendered, and OpenGL does not "
                                 "survive fork(); render in the parent or in a spawned process")
    if (width, height) in _CONTEXTS:
        return _CONTEXTS[(width, height)]
    try:
        renderer = pyrender.OffscreenRenderer(width, height)
    except Exception as exc:  # EGL/OSMesa report failures as assertions, RuntimeErrors or ctypes errors
        platform = os.environ.get("PYOPENGL_PLATFORM", DEFAULT_PLATFORM)
        raise BackendUnavailable(f"cannot create an offscreen OpenGL context with PYOPENGL_PLATFORM={platform} "
                                 f"({type(exc).__name__}: {_first_line(exc)}); {_CONTEXT_FIX}") from exc
    logger.debug("offscreen OpenGL context %dx%d on %s", width, height, os.environ.get("PYOPENGL_PLATFORM"))
    _CONTEXTS[(width, height)] = renderer
    return renderer


def _load_triton_first() -> None:
    """Import triton now when it is installed (CUDA builds of torch ship it and import it lazily).

    triton's native library bundles its own LLVM. Loaded into a process after Mesa's llvmpipe (which links the
    system's LLVM and is loaded with the first EGL context), the two clash and the process segfaults; loaded before,
    both work. Rendering must not depend on which heavy import happened first.
    """
    if importlib.util.find_spec("triton") is None:
        return
    try:
        import triton  # noqa: F401
    except Exception as exc:  # a broken triton only matters to torch.compile; rendering goes on
        logger.debug("triton did not import (%s: %s)", type(exc).__name__, _first_line(exc))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else "no details"


__all__ = ["DEFAULT_PLATFORM", "EXTRA", "load_pyrender", "offscreen_renderer"]
