"""`know3d demo`: the whole chain on tiny models, on any machine, in seconds: toy models trained on synthetic shapes
for the sparse structure, random ones for the rest."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .config import load_config
from .io import atomic_write, ensure_writable_dir
from .outputs import AssetLock
from .pipeline import AssetJob, GenerateResult, Know3dPipeline
from .progress import Progress
from .tiny import build_tiny_models
from .tiny.backpart import demo_settings, trained_dir, write_trained_set
from .tiny.trellis2 import SS_DECODER_DIR, TRELLIS2_DIR

TRAINED_SET = "trained"  # the trained toy set, inside the tiny root

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
    """Write the tiny models (first run only), the demo photo, and generate one asset with mode=know3d.

    The sparse-structure stage is the toy set trained by `scripts/bench_backpart.py` on the procedural family (a
    VAE, a flow and a Know3D adapter, shipped in `know3d_cli/tiny/trained/`); the photo is a held-out member of that
    family, so the 64^3 structure shows its body and the back part that `back` names. The editor and DINOv3 stay
    random (they were random in training too).
    """
    base = load_config(overrides)
    ensure_writable_dir(Path(out))
    root = build_tiny_models(Path(base.models.tiny_root))
    with AssetLock(root, TRAINED_SET):  # two first runs at once: the second waits, then finds it written
        trained = write_trained_set(root / TRAINED_SET, root)
    cfg = load_config(["preset=tiny", "mode=know3d", *demo_settings()["overrides"],
                       f"adapter.weights={trained / 'adapter'}", f"models.trellis2.path={trained / TRELLIS2_DIR}",
                       f"models.ss_decoder.path={trained / SS_DECODER_DIR}", *overrides])
    logger.warning("demo: TOY models trained on synthetic shapes (a body with one part on its back: handle, pocket, "
                   "fin, straps); the editor and DINOv3 are RANDOM. The 64^3 structure shows that the chain runs and "
                   "that the back text steers the back, not real-world quality")
    image_path = Path(out) / "demo_input.png"
    atomic_write(image_path, (trained_dir() / "demo.png").read_bytes())
    pipeline = Know3dPipeline(cfg, progress=progress)
    return pipeline.run(AssetJob(image=image_path, id="demo", back=back, seed=cfg.seed if cfg.seed is not None else 0),
                        Path(out))
