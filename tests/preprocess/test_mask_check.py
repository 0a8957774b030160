"""Warnings for threshold masks that look wrong, and that they reach the prepared image (metadata's warnings)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from know3d_cli.config import PreprocessConfig
from know3d_cli.preprocess import prepare_image
from know3d_cli.preprocess.mask_check import mask_warnings

WHITE = (250, 250, 250)


def _canvas(size: int = 200) -> np.ndarray:
    return np.full((size, size, 3), WHITE, np.uint8)


def _alpha(rgb: np.ndarray) -> np.ndarray:
    return np.where((np.abs(rgb.astype(int) - WHITE).sum(-1) > 30), 255, 0).astype(np.uint8)


def _warned(rgb: np.ndarray) -> str:
    return " | ".join(mask_warnings(_alpha(rgb), rgb))


def test_a_clean_product_shot_gets_no_warning():
    rgb = _canvas()
    rgb[40:150, 60:140] = (30, 90, 200)
    assert mask_warnings(_alpha(rgb), rgb) == []


def test_object_running_off_the_frame_touches_the_border():
    rgb = _canvas()
    rgb[40:200, 60:140] = (30, 90, 200)
    assert "touches the image border" in _warned(rgb)


def test_scattered_pieces_are_many_components():
    rgb = _canvas()
    for i in range(5):
        rgb[20 + 35 * i: 40 + 35 * i, 20 + 30 * i: 45 + 30 * i] = (200, 40, 40)
    assert "5 separate parts" in _warned(rgb)


def test_detached_grey_shadow_under_the_object():
    rgb = _canvas()
    rgb[30:130, 60:140] = (30, 90, 200)
    rgb[150:170, 50:150] = (150, 150, 152)  # a soft grey shadow on the floor, not touching the object
    assert "detached grey region under the object" in _warned(rgb)
    rgb[150:170, 50:150] = (200, 120, 40)  # a coloured part below (a second object piece) is not a shadow
    assert "grey region" not in _warned(rgb)


def test_tiny_foreground_fraction():
    rgb = _canvas()
    rgb[100:110, 100:110] = (30, 90, 200)
    assert "only 0.25% of the image" in _warned(rgb)


def test_warnings_reach_the_prepared_image(tmp_path):
    rgb = _canvas(120)
    rgb[30:120, 40:80] = (30, 90, 200)  # stands on the bottom edge: cut off
    Image.fromarray(rgb).save(tmp_path / "cut.png")
    prepared = prepare_image(tmp_path / "cut.png", PreprocessConfig())
    assert prepared.mask_source == "threshold"
    assert len(prepared.mask_warnings) == 1 and "touches the image border" in prepared.mask_warnings[0]
    assert prepared.mask_warnings[0] in prepared.warnings
