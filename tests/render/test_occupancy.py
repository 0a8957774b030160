"""Depth pictures of voxel sets: pixel placement, depth order, front/back mirror symmetry, contact sheets."""

from __future__ import annotations

import numpy as np
import pytest

from know3d_cli.render import contact_sheet, depth_image, depth_map, front_and_back

R = 8


def test_a_voxel_lands_on_its_pixel_and_mirrors_from_behind():
    coords = np.array([[1, 2, 6]])  # x = 1, y = 2, z = 6 (high)
    front = depth_map(coords, R, 0.0)  # camera on +y: +x is on the picture's left
    back = depth_map(coords, R, 180.0)
    assert np.argwhere(~np.isnan(front)).tolist() == [[1, R - 1 - 1]]  # row 1 (z = 6 near the top), column 6
    assert np.argwhere(~np.isnan(back)).tolist() == [[1, 1]]
    # y = 2 is far from the camera on +y and near the camera on -y
    assert front[1, R - 2] > 0.5 > back[1, 1]


def test_a_part_on_one_side_is_nearer_from_that_side():
    body = np.argwhere(np.ones((4, 4, 4), bool)) + 2  # a cube in the middle of an 8^3 grid
    handle = np.array([[4, 7, 4], [4, 7, 5]])  # sticks out towards +y
    coords = np.concatenate([body, handle])
    seen_from_handle_side = depth_map(coords, R, 0.0)
    seen_from_other_side = depth_map(coords, R, 180.0)
    assert np.nanmin(seen_from_handle_side) < np.nanmin(seen_from_other_side)
    # silhouettes from opposite sides are mirror images
    np.testing.assert_array_equal(np.isnan(seen_from_handle_side), np.isnan(seen_from_other_side)[:, ::-1])


@pytest.mark.parametrize("azimuth", [0.0, 90.0, 30.0, 215.0])
def test_every_view_of_a_full_grid_stays_inside_the_picture(azimuth):
    coords = np.argwhere(np.ones((R, R, R), bool))
    depth = depth_map(coords, R, azimuth)
    assert np.isfinite(depth).any() and np.nanmin(depth) >= 0.0 and np.nanmax(depth) <= 1.0
    if azimuth % 90 == 0:
        assert np.isfinite(depth).all()  # axis-aligned: the cube covers every pixel


def test_depth_image_grey_levels_and_scaling():
    image = depth_image(np.array([[0, 0, 0]]), R, 0.0, size=4 * R)
    arr = np.asarray(image)
    assert image.mode == "L" and image.size == (4 * R, 4 * R)
    assert (arr > 0).sum() == 16  # one voxel = a 4x4 block
    assert (np.asarray(depth_image(np.zeros((0, 3), int), R)) == 0).all()


def test_front_and_back_and_contact_sheet():
    front, back = front_and_back(np.array([[3, 3, 3]]), R, size=16)
    sheet = contact_sheet([[front, back], [back]], titles=["front", "back"])
    assert sheet.mode == "RGB"
    assert sheet.width == 2 * (16 + 2) + 2 and sheet.height == 12 + 2 * (16 + 2) + 2
    with pytest.raises(ValueError):
        contact_sheet([])
    with pytest.raises(ValueError):
        depth_map(np.zeros((3, 2)), R)
