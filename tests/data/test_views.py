"""Front/back renders of a training asset: which side each shows, and the inference crop conventions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from know3d_cli.config import AssetConfig, PreprocessConfig, ViewsConfig
from know3d_cli.data import asset_scene, draw_view_angles, load_asset, render_view_pair
from know3d_cli.data.views import stored_view
from know3d_cli.errors import AssetError, InputError
from know3d_cli.preprocess import crop_box

from .conftest import BOX_COLORS, colored_box, textured_quad


@pytest.fixture(scope="module")
def box_asset(tmp_path_factory):
    path = tmp_path_factory.mktemp("views") / "box.ply"  # PLY stays Z-up: its -y side is the front (glTF +z)
    colored_box(BOX_COLORS, extents=(1.0, 0.6, 0.8)).export(path)
    return load_asset(path, AssetConfig())


def test_front_and_back_views_show_opposite_sides(box_asset):
    views = ViewsConfig(size=128, shading="flat")
    pair = render_view_pair(box_asset, 0.0, 0.0, views, PreprocessConfig())
    assert pair.front.mode == "RGBA" and pair.front_image.mode == "RGB"
    for crop in (pair.front, pair.back):
        assert crop.size[0] == crop.size[1]
    front = np.asarray(pair.front)
    back = np.asarray(pair.back)
    np.testing.assert_array_equal(front[front.shape[0] // 2, front.shape[1] // 2], [*BOX_COLORS["-y"], 255])
    np.testing.assert_array_equal(back[back.shape[0] // 2, back.shape[1] // 2], [*BOX_COLORS["+y"], 255])
    turned = render_view_pair(box_asset, 90.0, 0.0, views, PreprocessConfig())
    centre = np.asarray(turned.front)[turned.front.size[1] // 2, turned.front.size[0] // 2]
    np.testing.assert_array_equal(centre, [*BOX_COLORS["+x"], 255])  # azimuth 90 looks from +x


def test_views_use_the_inference_crop(box_asset):
    preprocess = PreprocessConfig()
    pair = render_view_pair(box_asset, 30.0, 20.0, ViewsConfig(size=128), preprocess)
    alpha = np.asarray(pair.front.getchannel("A"))
    # cropping the crop again finds the same square (up to the crop's own rounding): centred, spanning the crop
    box = np.array(crop_box(alpha, preprocess))
    np.testing.assert_allclose(box, [0, 0, *pair.front.size], atol=2)
    rgb = np.asarray(pair.front_image, dtype=np.float32)
    rgba = np.asarray(pair.front, dtype=np.float32)
    np.testing.assert_allclose(rgb, np.floor(rgba[..., :3] * rgba[..., 3:] / 255), atol=1)  # premultiplied on black
    assert rgb[alpha == 0].max() == 0


def test_a_stored_render_reads_back_as_the_models_saw_it(box_asset, tmp_path):
    pair = render_view_pair(box_asset, 30.0, 5.0, ViewsConfig(size=96, shading="flat"), PreprocessConfig())
    pair.front.save(tmp_path / "front.png")  # what the dataset writer stores
    assert stored_view(tmp_path / "front.png").tobytes() == pair.front_image.tobytes()
    with pytest.raises(InputError, match="not found"):
        stored_view(tmp_path / "missing.png")
    (tmp_path / "garbage.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="not a readable image"):
        stored_view(tmp_path / "garbage.png")


def test_draw_view_angles_stays_in_range():
    rng = np.random.default_rng(0)
    cfg = ViewsConfig(azimuth_range=[10.0, 20.0], elevation_range=[-5.0, 5.0])
    angles = np.array([draw_view_angles(rng, cfg) for _ in range(50)])
    assert (angles[:, 0] >= 10).all() and (angles[:, 0] <= 20).all()
    assert (angles[:, 1] >= -5).all() and (angles[:, 1] <= 5).all() and angles[:, 1].std() > 1


def test_asset_scene_turns_the_asset_back_to_gltf(box_asset):
    scene = asset_scene(box_asset)
    vertices = np.concatenate([g.vertices for g in scene.geometry.values()])
    extent = vertices.max(axis=0) - vertices.min(axis=0)
    np.testing.assert_allclose(extent, np.array([1.0, 0.8, 0.6]) * box_asset.scale, rtol=1e-5)  # PLY z -> glTF y
    assert sum(len(g.faces) for g in scene.geometry.values()) == box_asset.num_faces


def test_a_render_with_nothing_to_crop_is_an_asset_error(tmp_path):
    texture = np.zeros((4, 4, 4), np.uint8)  # alpha 0 everywhere, cut out by MASK
    path = tmp_path / "invisible.glb"
    textured_quad(texture, alphaMode="MASK", alphaCutoff=0.5).export(path)
    asset = load_asset(path, AssetConfig())
    with pytest.raises(AssetError) as info:
        render_view_pair(asset, 0.0, 0.0, ViewsConfig(size=32), PreprocessConfig())
    assert info.value.reason == "empty_render" and "\n" not in str(info.value)


def test_views_render_textures(tmp_path):
    texture = np.zeros((8, 8, 4), np.uint8)
    texture[..., 0], texture[..., 3] = 255, 255  # plain red
    path = tmp_path / "red.glb"
    textured_quad(texture).export(path)
    pair = render_view_pair(load_asset(path, AssetConfig()), 0.0, 0.0, ViewsConfig(size=64, shading="flat"),
                            PreprocessConfig())
    centre = np.asarray(pair.front)[pair.front.size[1] // 2, pair.front.size[0] // 2]
    np.testing.assert_array_equal(centre, [255, 0, 0, 255])
    assert isinstance(pair.back, Image.Image)


@pytest.mark.parametrize("azimuth", [0.0, 30.0, 200.0])
def test_occupancy_pictures_look_from_the_side_of_the_render_camera(tmp_path, azimuth):
    """An L (a post and an arm to one side): the back render and the occupancy picture at `occupancy_azimuth` of the
    back camera show the arm on the same side."""
    import trimesh

    from know3d_cli.config import OVoxelConfig
    from know3d_cli.data import asset_to_ovoxel, occupancy_azimuth
    from know3d_cli.render import depth_image

    post = trimesh.creation.box((0.2, 0.2, 1.0))
    arm = trimesh.creation.box((0.6, 0.2, 0.2))
    arm.apply_translation((0.4, 0.0, 0.4))
    path = tmp_path / "ell.ply"  # PLY: the TRELLIS.2 (Z-up) frame as written
    trimesh.util.concatenate([post, arm]).export(path)
    asset = load_asset(path, AssetConfig())
    pair = render_view_pair(asset, azimuth, 0.0, ViewsConfig(size=128, fov=20.0), PreprocessConfig())
    occupancy = asset_to_ovoxel(asset, OVoxelConfig(resolution=64)).coords.numpy()
    picture = depth_image(occupancy, 64, occupancy_azimuth(azimuth + 180.0))

    def lean(mask: np.ndarray) -> float:
        """Where the mass sits horizontally, relative to the middle of the silhouette's extent (-: left)."""
        columns = np.nonzero(mask)[1]
        return columns.mean() - (columns.min() + columns.max()) / 2

    render_lean = lean(np.asarray(pair.back)[..., 3] > 0)
    voxel_lean = lean(np.asarray(picture) > 0)
    assert abs(render_lean) > 1 and np.sign(render_lean) == np.sign(voxel_lean)
