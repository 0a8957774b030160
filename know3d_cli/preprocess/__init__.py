"""Input photo -> masked, square-cropped, premultiplied image (TRELLIS.2 preprocessing, spec §1.3)."""

from .background import BiRefNetMasker, has_alpha, remove_background, threshold_alpha
from .crop import crop_box, downscale, premultiply_on_black, square_crop
from .load import decode_image, file_sha256, load_image, read_input
from .prepare import PreparedImage, prepare_image

__all__ = [
    "BiRefNetMasker",
    "PreparedImage",
    "crop_box",
    "decode_image",
    "downscale",
    "file_sha256",
    "has_alpha",
    "load_image",
    "read_input",
    "premultiply_on_black",
    "prepare_image",
    "remove_background",
    "square_crop",
    "threshold_alpha",
]
