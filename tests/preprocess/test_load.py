"""load_image: every kind of bad file is a one-line InputError; every accepted mode comes out 8-bit RGB(A)."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFile

from know3d_cli.config import PreprocessConfig
from know3d_cli.errors import InputError
from know3d_cli.preprocess import file_sha256, load_image


def _png_bytes(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG file with an arbitrary IHDR size (PIL cannot write 0-sized or huge images)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(idat)) + chunk(b"IEND", b"")


def _noise_png(path: Path, size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _missing(tmp: Path) -> Path:
    return tmp / "nope.png"


def _directory(tmp: Path) -> Path:
    (tmp / "folder.png").mkdir()
    return tmp / "folder.png"


def _text(tmp: Path) -> Path:
    path = tmp / "notes.png"
    path.write_text("this is not an image\n")
    return path


def _truncated(tmp: Path) -> Path:
    data = _noise_png(tmp / "full.png").read_bytes()
    path = tmp / "truncated.png"
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def _corrupt(tmp: Path) -> Path:
    data = bytearray(_noise_png(tmp / "full.png").read_bytes())
    data[100:400] = bytes(300)  # zeroed compressed pixel data: a zlib/CRC failure on decode
    path = tmp / "corrupt.png"
    path.write_bytes(bytes(data))
    return path


def _zero_size(tmp: Path) -> Path:
    path = tmp / "zero.png"
    path.write_bytes(_png_bytes(0, 16))
    return path


def _bomb(tmp: Path) -> Path:
    path = tmp / "bomb.png"
    path.write_bytes(_png_bytes(100_000, 100_000))  # header only, PIL's own bomb guard fires
    return path


def _over_limit(tmp: Path) -> Path:
    path = tmp / "big.png"
    path.write_bytes(_png_bytes(9000, 9000))  # 81 Mpx: under PIL's guard, over the default max_pixels below
    return path


@pytest.mark.parametrize(
    ("make", "reason", "max_pixels"),
    [
        (_missing, "not found", None),
        (_directory, "is a directory", None),
        (_text, "not an image", None),
        (_truncated, "truncated or corrupt", None),
        (_corrupt, "truncated or corrupt", None),
        (_zero_size, "zero size", None),
        (_bomb, "too large", None),
        (_over_limit, "exceeds preprocess.max_pixels=80000000", 80_000_000),
    ],
    ids=["missing", "directory", "text", "truncated", "corrupt", "zero-size", "bomb", "over-max-pixels"],
)
def test_bad_inputs_raise_input_error(tmp_path, make, reason, max_pixels):
    path = make(tmp_path)
    cfg = PreprocessConfig() if max_pixels is None else PreprocessConfig(max_pixels=max_pixels)
    with pytest.raises(InputError) as info:
        load_image(path, cfg)
    message = str(info.value)
    assert reason in message
    assert str(path) in message
    assert "\n" not in message
    assert info.value.exit_code == 3


def test_size_is_checked_before_decoding(tmp_path):
    # A valid small image: rejected by size alone when max_pixels is lowered.
    path = _noise_png(tmp_path / "ok.png", size=40)
    with pytest.raises(InputError, match="40x40 = 1600 pixels exceeds preprocess.max_pixels=1000"):
        load_image(path, PreprocessConfig(max_pixels=1000))


def test_truncated_detected_even_if_pil_was_told_to_accept_it(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(_truncated(tmp_path), PreprocessConfig())
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = _noise_png(tmp_path / "locked.png")
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            load_image(path, PreprocessConfig())
    finally:
        path.chmod(0o644)


# ------------------------------------------------------------------------------------ accepted modes
def _save(tmp: Path, image: Image.Image, name: str, **kwargs) -> Path:
    path = tmp / name
    image.save(path, **kwargs)
    return path


def test_rgb_and_sha256(tmp_path):
    path = _noise_png(tmp_path / "rgb.png", size=32)
    image = load_image(path, PreprocessConfig())
    assert image.mode == "RGB" and image.size == (32, 32)
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(path).convert("RGB")))
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_rgba_keeps_alpha(tmp_path):
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[2:6, 2:6] = (10, 20, 30, 255)
    image = load_image(_save(tmp_path, Image.fromarray(arr, "RGBA"), "rgba.png"), PreprocessConfig())
    assert image.mode == "RGBA"
    assert np.array_equal(np.asarray(image), arr)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grey_becomes_rgb(tmp_path, mode):
    grey = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8), "L").convert(mode)
    image = load_image(_save(tmp_path, grey, f"{mode}.png"), PreprocessConfig())
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image)[:, :, 1], np.array([[0, 255], [255, 0]]))


def test_la_becomes_rgba(tmp_path):
    la = Image.merge("LA", [Image.new("L", (4, 4), 200), Image.new("L", (4, 4), 77)])
    image = load_image(_save(tmp_path, la, "la.png"), PreprocessConfig())
    assert image.mode == "RGBA"
    assert tuple(image.getpixel((1, 1))) == (200, 200, 200, 77)


def test_palette_with_and_without_transparency(tmp_path):
    idx = np.array([[0, 1], [1, 0]], np.uint8)
    pal = Image.fromarray(idx, "P")
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    plain = load_image(_save(tmp_path, pal, "p.png"), PreprocessConfig())
    assert plain.mode == "RGB" and plain.getpixel((0, 0)) == (255, 0, 0)
    keyed = load_image(_save(tmp_path, pal, "pt.png", transparency=0), PreprocessConfig())
    assert keyed.mode == "RGBA"
    assert keyed.getpixel((0, 0))[3] == 0 and keyed.getpixel((1, 0)) == (0, 0, 255, 255)


def test_16_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 65535], [32768, 257 * 100]], np.uint16)
    path = _save(tmp_path, Image.fromarray(values), "deep.png")
    assert Image.open(path).mode.startswith("I")
    image = load_image(path, PreprocessConfig())
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image)[:, :, 0], np.array([[0, 255], [128, 100]]))


def test_cmyk_is_converted(tmp_path):
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # no cyan, full magenta + yellow = red
    image = load_image(_save(tmp_path, cmyk, "cmyk.tif"), PreprocessConfig())
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = (255, 0, 0)  # left half red
    arr[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # display = rotate 90 degrees clockwise
    path = _save(tmp_path, Image.fromarray(arr), "rotated.png", exif=exif)
    image = load_image(path, PreprocessConfig())
    assert image.size == (10, 20)
    assert image.getpixel((5, 2)) == (255, 0, 0)  # the left half is now on top
    assert image.getpixel((5, 17)) == (0, 0, 255)


# ------------------------------------------------------------------------------------ reading once, odd files
def test_empty_file_says_empty(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        load_image(path, PreprocessConfig())


def test_pipe_is_read_once_and_hashed_as_decoded(tmp_path):
    """`/dev/stdin` and other pipes: the recorded sha256 is that of the bytes that were decoded."""
    from know3d_cli.preprocess import prepare_image

    data = _object_png_bytes()
    read, write = os.pipe()

    def feed() -> None:
        os.write(write, data)
        os.close(write)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        prepared = prepare_image(Path(f"/dev/fd/{read}"), PreprocessConfig())  # what `/dev/stdin` is in a pipeline
    finally:
        writer.join(timeout=30)
        os.close(read)
    assert prepared.sha256 == hashlib.sha256(data).hexdigest()
    (tmp_path / "same.png").write_bytes(data)
    from_file = prepare_image(tmp_path / "same.png", PreprocessConfig())
    assert prepared.image.tobytes() == from_file.image.tobytes() and prepared.crop_box == from_file.crop_box


def _object_png_bytes() -> bytes:
    arr = np.full((40, 40, 3), 255, np.uint8)
    arr[8:32, 10:30] = (200, 40, 40)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_max_pixels_above_pils_own_limit_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL's global guard, far below the setting
    path = _noise_png(tmp_path / "ok.png", size=64)  # 4096 px: over 2x PIL's limit, under max_pixels
    assert load_image(path, PreprocessConfig(max_pixels=10_000)).size == (64, 64)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
    with pytest.raises(InputError, match="exceeds preprocess.max_pixels=4000"):
        load_image(path, PreprocessConfig(max_pixels=4000))


def test_animated_gif_uses_its_first_frame_with_a_warning(tmp_path, caplog):
    from know3d_cli.preprocess import prepare_image

    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 255, 255), (0, 0, 0), (255, 0, 0))]
    ImageDraw.Draw(frames[0]).rectangle([8, 8, 24, 24], fill=(0, 0, 255))
    path = tmp_path / "spin.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with caplog.at_level(logging.WARNING):
        image = load_image(path, PreprocessConfig())
    assert image.getpixel((16, 16))[:3] == (0, 0, 255) and image.getpixel((2, 2))[:3] == (255, 255, 255)
    assert "animated (3 frames)" in caplog.text
    assert any("first frame" in w for w in prepare_image(path, PreprocessConfig()).warnings)  # -> metadata.json


# ------------------------------------------------------------------------------------ fuzzing
def _seed_files() -> list[bytes]:
    rng = np.random.default_rng(0)
    files = []
    for fmt, mode in [("PNG", "RGBA"), ("GIF", "P"), ("JPEG", "RGB"), ("BMP", "RGB"), ("WEBP", "RGBA"), ("TIFF", "RGB"),
                      ("TIFF", "I;16"), ("PNG", "LA"), ("ICO", "RGBA"), ("TGA", "RGB"), ("PPM", "RGB")]:
        image = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).convert(mode)
        buf = io.BytesIO()
        image.save(buf, format=fmt)
        files.append(buf.getvalue())
    return files


SEED_FILES = _seed_files()


@st.composite
def damaged_files(draw) -> bytes:
    """Random bytes, or a small valid image of some format with bytes changed or cut off."""
    kind = draw(st.sampled_from(["random", "mutated", "truncated"]))
    if kind == "random":
        return draw(st.binary(max_size=400))
    data = bytearray(draw(st.sampled_from(SEED_FILES)))
    if kind == "truncated":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=damaged_files())
@example(data=b"")  # zero bytes: "empty", not "not an image"
@example(data=SEED_FILES[5][:8])  # a TIFF header alone: PIL warns about corrupt EXIF on its way to failing
def test_loader_fuzz_gives_an_image_or_one_clean_input_error(tmp_path, data):
    path = tmp_path / "fuzzed.img"
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = load_image(path, PreprocessConfig())
        except InputError as exc:
            message = str(exc)
            assert str(path) in message and "\n" not in message and exc.exit_code == 3
            assert ("is empty" in message) == (data == b"")
        else:
            assert image.mode in ("RGB", "RGBA") and min(image.size) > 0
    assert [str(w.message) for w in caught] == []  # nothing but the one error line reaches the user
