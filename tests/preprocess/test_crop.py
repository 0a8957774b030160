"""Downscale, square crop around the object, premultiplication, and the whole prepare_image chain."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from know3d_cli.config import PreprocessConfig
from know3d_cli.errors import InputError
from know3d_cli.preprocess import PreparedImage, crop_box, downscale, prepare_image, square_crop


def _rgba(width, height, box, colour=(200, 100, 50), alpha=255) -> Image.Image:
    arr = np.zeros((height, width, 4), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = (*colour, alpha)
    return Image.fromarray(arr, "RGBA")


def test_downscale_longer_side():
    big = Image.new("RGB", (2048, 1000))
    assert downscale(big, 1024).size == (1024, 500)
    tall = Image.new("RGBA", (300, 3000))
    assert downscale(tall, 1024).size == (102, 1024)
    small = Image.new("RGB", (640, 480))
    assert downscale(small, 1024) is small


def test_crop_is_square_and_centred():
    image = _rgba(100, 80, (10, 20, 50, 40))  # object x 10..49, y 20..39
    rgb, rgba, box = square_crop(image, PreprocessConfig())
    # TRELLIS.2: side = max(x_max - x_min, y_max - y_min) = 39, centre (29.5, 29.5), half = 19
    assert box == (10, 10, 48, 48)
    assert rgb.size == rgba.size == (38, 38)
    assert rgb.mode == "RGB" and rgba.mode == "RGBA"
    alpha = np.asarray(rgba)[:, :, 3] > 0
    rows, cols = np.nonzero(alpha)
    # centred to within a pixel (TRELLIS.2's half-pixel centre is rounded half-to-even, 10.5 -> 10)
    assert abs(rows.mean() - 18.5) <= 1.0 and abs(cols.mean() - 18.5) <= 1.0
    assert alpha[10:30, :].all() and not alpha[:10].any() and not alpha[30:].any()  # full width, middle band


def test_crop_past_border_is_transparent_black():
    image = _rgba(60, 60, (0, 0, 20, 40))  # object in the top-left corner
    rgb, rgba, box = square_crop(image, PreprocessConfig())
    assert box[0] < 0  # the square reaches past the left edge
    arr = np.asarray(rgba)
    assert arr[:, : -box[0]].max() == 0  # zero-filled outside the image
    assert np.asarray(rgb)[:, : -box[0]].max() == 0


def test_premultiplied_onto_black():
    arr = np.zeros((40, 40, 4), np.uint8)
    arr[10:30, 10:30] = (200, 100, 50, 255)
    arr[15:25, 15:25] = (200, 100, 50, 128)  # half-transparent centre, below the box cutoff
    rgb, rgba, box = square_crop(Image.fromarray(arr, "RGBA"), PreprocessConfig())
    out = np.asarray(rgb)
    x, y = 20 - box[0], 20 - box[1]
    assert tuple(out[y, x]) == (100, 50, 25)  # trunc(c * 128 / 255)
    assert tuple(out[12 - box[1], 12 - box[0]]) == (200, 100, 50)
    assert tuple(np.asarray(rgba)[y, x]) == (200, 100, 50, 128)


def test_fully_transparent_is_input_error():
    with pytest.raises(InputError, match="no foreground found.*fully transparent"):
        square_crop(Image.new("RGBA", (32, 32), (255, 255, 255, 0)), PreprocessConfig(), name="ghost.png")


def test_faint_or_tiny_foreground_is_input_error():
    faint = _rgba(32, 32, (8, 8, 24, 24), alpha=150)  # below alpha_cutoff 0.8
    with pytest.raises(InputError, match="no foreground found"):
        square_crop(faint, PreprocessConfig())
    speck = _rgba(200, 200, (5, 5, 7, 7))  # 4 pixels = 0.01 %
    with pytest.raises(InputError, match="min_foreground"):
        crop_box(np.asarray(speck.getchannel("A")), PreprocessConfig(min_foreground=0.001))
    assert crop_box(np.asarray(speck.getchannel("A")), PreprocessConfig(min_foreground=0.0)) == (4, 4, 6, 6)  # 2x2 box


def test_prepare_image_rgba_file(tmp_path):
    image = _rgba(1500, 750, (300, 150, 900, 600))
    path = tmp_path / "object.png"
    image.save(path)
    prepared = prepare_image(path, PreprocessConfig())
    assert isinstance(prepared, PreparedImage)
    assert prepared.mask_source == "alpha"
    assert prepared.original_size == (1500, 750) and prepared.working_size == (1024, 512)
    side = prepared.crop_box[2] - prepared.crop_box[0]
    assert prepared.image.size == prepared.rgba.size == (side, side)
    assert abs(side - 600 * 1024 / 1500) <= 3  # the object's longer side, after the downscale
    assert len(prepared.sha256) == 64


def test_prepare_image_plain_background(tmp_path):
    arr = np.full((120, 160, 3), 245, np.uint8)
    arr[45:75, 50:110] = (20, 90, 200)  # 60 x 30 blue box on off-white
    path = tmp_path / "photo.jpg"
    Image.fromarray(arr).save(path, quality=95)
    prepared = prepare_image(path, PreprocessConfig())
    assert prepared.mask_source == "threshold"
    assert prepared.rgba.size == prepared.image.size
    side = prepared.image.size[0]
    assert abs(side - 60) <= 2
    rgb, alpha = np.asarray(prepared.image), np.asarray(prepared.rgba)[:, :, 3]
    assert alpha[:8].max() == 0 and rgb[:8].max() == 0  # backdrop above the box: transparent, black
    assert abs(int(rgb[side // 2, side // 2, 2]) - 200) < 10 and alpha[side // 2, side // 2] == 255


def test_prepare_image_blank_photo_is_input_error(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), (240, 240, 240)).save(path)
    with pytest.raises(InputError, match="no foreground found.*background colour"):
        prepare_image(path, PreprocessConfig())
