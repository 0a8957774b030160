"""`know3d demo`: the whole chain on tiny random models, on any machine, in seconds."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .config import load_config
from .io import atomic_write, ensure_writable_dir
from .pipeline import AssetJob, GenerateResult, Know3dPipeline
from .progress import Progress
from .tiny import build_tiny_models

logger = logging.getLogger(__name__)


def demo_image(size: int = 256) -> Image.Image:
    """A mug-like object (body + handle, shaded) on a plain white background."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    s = size / 256
    draw.ellipse([150 * s, 95 * s, 215 * s, 175 * s], outline=(40, 70, 140), width=int(14 * s))  # handle
    body = np.zeros((size, size, 3), np.float32)
    xs = np.linspace(0, 1, size)[None, :, None]
    body[:] = np.array([60, 100, 190], np.float32) * (0.6 + 0.4 * np.sin(np.pi * xs))
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rounded_rectangle([60 * s, 60 * s, 170 * s, 210 * s], radius=int(18 * s), fill=255)
    img.paste(Image.fromarray(body.astype(np.uint8)), (0, 0), mask)
    return img


def run_demo(out: Path, back: str, overrides: list[str], progress: Progress | None = None) -> GenerateResult:
    """Write the tiny models (first run only), a demo photo, and generate one asset with mode=know3d."""
    base = load_config(overrides)
    ensure_writable_dir(Path(out))
    root = build_tiny_models(Path(base.models.tiny_root))
    cfg = load_config(["preset=tiny", "mode=know3d", f"adapter.weights={root / 'adapter'}", *overrides])
    logger.warning("demo: every model is RANDOMLY initialised; the asset shows that the chain runs, not its quality")
    image_path = Path(out) / "demo_input.png"
    buf = io.BytesIO()
    demo_image().save(buf, format="PNG")
    atomic_write(image_path, buf.getvalue())
    pipeline = Know3dPipeline(cfg, progress=progress)
    return pipeline.run(AssetJob(image=image_path, id="demo", back=back, seed=cfg.seed if cfg.seed is not None else 0),
                        Path(out))
