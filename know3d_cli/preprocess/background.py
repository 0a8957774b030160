"""The object mask: the photo's own alpha, a model-free plain-background remover, or BiRefNet.

Choice (`PreprocessConfig.background`):
    auto       alpha when the image has a non-opaque alpha channel, else BiRefNet when the caller passes a loaded
               one (its weights are on disk), else threshold, checked by `mask_check` (warnings when it looks wrong)
    alpha      the image's alpha; an image without one is an error
    threshold  flood fill of the border-connected background colour (plain backdrops, product shots)
    birefnet   the MIT `ZhengPeng7/BiRefNet` segmentation model from a local directory (runs remote code: it is
               used only when asked for, or by `auto` when its weights were pulled)
A non-opaque alpha channel always wins, as in TRELLIS.2's `preprocess_image`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from ..config import Background, PreprocessConfig
from ..errors import CheckpointError, InputError, ModelMissingError

logger = logging.getLogger(__name__)

BIREFNET_SIZE = 1024  # BiRefNet's square input side
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EDGE_SOFTNESS = 0.5  # Gaussian sigma (pixels) that feathers the threshold mask's edge
MIN_SPECK_FRACTION = 0.01  # foreground islands smaller than this fraction of the largest one are noise


def has_alpha(image: Image.Image) -> bool:
    """The image carries an alpha channel that is not fully opaque."""
    return image.mode == "RGBA" and image.getchannel("A").getextrema()[0] < 255


def remove_background(
    image: Image.Image,
    cfg: PreprocessConfig,
    *,
    birefnet: BiRefNetMasker | None = None,
    birefnet_path: Path | None = None,
    name: str = "input image",
) -> tuple[Image.Image, str]:
    """Attach an object mask as alpha.

    Args:
        image: "RGB" or "RGBA" image (already downscaled).
        cfg: preprocessing section; `background` picks the method, `threshold_tolerance` tunes threshold.
        birefnet: a loaded masker to reuse (batch runs); built from `birefnet_path` when None and needed. With
            `background=auto` it is used when given.
        birefnet_path: local BiRefNet model directory.
        name: how error messages refer to the image (its path).

    Returns:
        (RGBA image of the same size, mask source "alpha" | "threshold" | "birefnet").
    """
    if has_alpha(image):
        if cfg.background in (Background.threshold, Background.birefnet):
            logger.info("%s has transparency: using its alpha instead of %s", name, cfg.background)
        return image, "alpha"
    if cfg.background == Background.alpha:
        raise InputError(f"{name} has no transparency (alpha channel), but preprocess.background=alpha; "
                         "pass an RGBA image or use preprocess.background=auto")
    rgb = image.convert("RGB")
    if cfg.background == Background.birefnet or (cfg.background == Background.auto and birefnet is not None):
        masker = birefnet if birefnet is not None else BiRefNetMasker(_require_dir(birefnet_path))
        mask = masker(rgb)
        source = "birefnet"
    else:
        mask = Image.fromarray(threshold_alpha(np.asarray(rgb), cfg.threshold_tolerance, name=name), mode="L")
        source = "threshold"
    rgba = rgb.copy()
    rgba.putalpha(mask)
    return rgba, source


# ------------------------------------------------------------------------------------ threshold
def threshold_alpha(rgb: np.ndarray, tolerance: float, *, name: str = "input image") -> np.ndarray:
    """Model-free mask for an object on a plain background.

    The background colour is the per-channel median of a thin border ring. Pixels within `tolerance` of it
    (RMS channel difference in [0, 1], after a 3x3 median filter that removes sensor noise but keeps edges)
    that connect to the border form the background; foreground specks far smaller than the main object are
    dropped, and the edge is feathered slightly.

    Args:
        rgb: (H, W, 3) uint8.
        tolerance: largest colour distance (0-1) that still counts as background.

    Returns:
        (H, W) uint8 alpha, 255 = object.
    """
    height, width = rgb.shape[:2]
    pixels = rgb.astype(np.float32) / 255.0  # (H, W, 3)
    ring = _border_ring(height, width, max(1, min(height, width) // 100))
    background = np.median(pixels[ring], axis=0)  # (3,)
    distance = np.sqrt(np.mean((pixels - background) ** 2, axis=-1))  # (H, W) in [0, 1]
    distance = ndimage.median_filter(distance, size=3, mode="nearest")
    candidate = distance <= tolerance

    plain = candidate[ring].mean()
    if plain < 0.5:
        logger.warning("%s: only %.0f%% of the border matches one background colour; the threshold mask may be "
                       "poor (use an RGBA image, or preprocess.background=birefnet)", name, 100 * plain)

    labels, count = ndimage.label(candidate)  # 4-connected regions of background-like colour
    touches_border = np.zeros(count + 1, dtype=bool)
    touches_border[np.unique(labels[ring])] = True
    touches_border[0] = False
    foreground = ~touches_border[labels]
    foreground = _drop_specks(foreground)
    if not foreground.any():
        return np.zeros((height, width), dtype=np.uint8)
    if foreground.all():
        logger.warning("%s: no plain background found; the whole image is treated as the object", name)
    soft = ndimage.gaussian_filter(foreground.astype(np.float32), EDGE_SOFTNESS, mode="nearest")
    return np.rint(soft * 255.0).astype(np.uint8)


def _border_ring(height: int, width: int, thickness: int) -> np.ndarray:
    """(H, W) bool, True on the outer `thickness` pixels of every side."""
    ring = np.ones((height, width), dtype=bool)
    ring[thickness:height - thickness, thickness:width - thickness] = False
    return ring


def _drop_specks(foreground: np.ndarray) -> np.ndarray:
    """Remove foreground islands smaller than MIN_SPECK_FRACTION of the largest island."""
    labels, count = ndimage.label(foreground)
    if count <= 1:
        return foreground
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    keep = sizes >= MIN_SPECK_FRACTION * sizes.max()
    keep[0] = False
    return keep[labels]


# ------------------------------------------------------------------------------------ BiRefNet
class BiRefNetMasker:
    """BiRefNet salient-object segmentation (MIT `ZhengPeng7/BiRefNet`) loaded from a local directory.

    Loaded with `AutoModelForImageSegmentation.from_pretrained(dir, trust_remote_code=True)`; the directory's
    own Python code runs, which is why it is used only when `preprocess.background=birefnet`.
    """

    def __init__(self, model_dir: Path, device: Any = None) -> None:
        import torch
        from transformers import AutoModelForImageSegmentation

        model_dir = _require_dir(model_dir)
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            try:
                model = AutoModelForImageSegmentation.from_pretrained(
                    str(model_dir), trust_remote_code=True, local_files_only=True, dtype=torch.float32
                )
            except AttributeError as exc:
                # BiRefNet's hub code predates transformers 5 (no `post_init()`, so no `all_tied_weights_keys`):
                # build its class directly and load the weights ourselves.
                logger.info("BiRefNet remote code is not transformers-5 ready (%s); loading its weights directly",
                            exc)
                model = _load_remote_model_directly(model_dir)
        except (OSError, ValueError, KeyError, ImportError, RuntimeError, AttributeError, TypeError) as exc:
            raise CheckpointError(f"cannot load BiRefNet from {model_dir}: {' '.join(str(exc).split())}") from exc
        self.model = model.to(self.device, torch.float32).eval()

    def to(self, device: Any) -> BiRefNetMasker:
        """Move the network (the pipeline's residency keeps it on the GPU only while preprocessing runs)."""
        import torch

        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def __call__(self, rgb: Image.Image) -> Image.Image:
        """(W, H) RGB image -> (W, H) "L" mask, 255 = object."""
        import torch

        x = birefnet_input(rgb).to(self.device)
        with torch.inference_mode():
            logits = self.model(x)[-1]  # (1, 1, 1024, 1024), the finest prediction
        return birefnet_mask(logits, rgb.size)


def _load_remote_model_directly(model_dir: Path):
    """The directory's `AutoModelForImageSegmentation` class, built from its config, weights loaded strictly."""
    import torch
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=True, local_files_only=True)
    reference = (getattr(config, "auto_map", None) or {}).get("AutoModelForImageSegmentation")
    if reference is None:
        raise ValueError("config.json has no auto_map entry for AutoModelForImageSegmentation")
    model_class = get_class_from_dynamic_module(reference, str(model_dir), local_files_only=True)
    model = model_class(config)  # positional, as `from_pretrained` passes it
    if (model_dir / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(model_dir / "model.safetensors"))
    elif (model_dir / "pytorch_model.bin").is_file():
        state = torch.load(model_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise OSError("no model.safetensors or pytorch_model.bin")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise KeyError(f"{len(missing)} weights missing from the checkpoint, e.g. {missing[:3]}")
    if unexpected:
        logger.warning("BiRefNet checkpoint has %d unused tensors, e.g. %s", len(unexpected), unexpected[:3])
    return model


def birefnet_input(rgb: Image.Image):
    """(1, 3, 1024, 1024) float32 tensor: bilinear resize, /255, ImageNet normalisation."""
    import torch

    resized = rgb.convert("RGB").resize((BIREFNET_SIZE, BIREFNET_SIZE), Image.Resampling.BILINEAR)
    arr = (np.asarray(resized, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD  # (S, S, 3)
    return torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1)[None]


def birefnet_mask(logits, size: tuple[int, int]) -> Image.Image:
    """Sigmoid of (1, 1, S, S) logits -> "L" mask resized to `size` (W, H) with PIL's default resampling."""
    prob = logits.detach().float().sigmoid()[0, 0].cpu().numpy()  # (S, S)
    mask = Image.fromarray((prob * 255.0).astype(np.uint8), mode="L")
    return mask.resize(size)


def _require_dir(model_dir: Path | None) -> Path:
    if model_dir is None or not Path(model_dir).is_dir():
        where = f" at {model_dir}" if model_dir is not None else ""
        raise ModelMissingError(f"preprocess.background=birefnet needs the BiRefNet model, not found{where}; "
                                "run `know3d models pull birefnet` or set models.birefnet.path")
    return Path(model_dir)
