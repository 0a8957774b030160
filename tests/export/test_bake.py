"""Baking the voxel PBR attributes into UV textures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from know3d_cli.export.bake import SurfaceAttributes, bake_pbr_textures, uv_to_pixels
from know3d_cli.export.uv_atlas import unwrap_uv

PBR = (0.2, 0.4, 0.6, 0.8, 0.1, 1.0)  # base colour, metallic, roughness, alpha


def test_uvs_map_to_pixels_with_v_up():
    pixels = uv_to_pixels(np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.25]]), 8)
    np.testing.assert_array_equal(pixels, [[0.0, 0.0], [8.0, 8.0], [4.0, 6.0]])


@pytest.fixture(scope="module")
def sphere_surface():
    """A 0.3-radius sphere and a 16^3 voxel volume around it holding `PBR` everywhere."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.3)
    axis = torch.arange(16)
    coords = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    attrs = torch.tensor(PBR).expand(len(coords), 6)
    return sphere, SurfaceAttributes(sphere.vertices, sphere.faces, coords, attrs, 16)


def test_surface_attributes_sample_the_volume_at_the_closest_surface_point(sphere_surface):
    sphere, surface = sphere_surface
    values = surface.sample(sphere.vertices * 1.05)
    np.testing.assert_allclose(values, np.broadcast_to(PBR, values.shape), atol=1e-6)
    assert surface.sample(np.zeros((0, 3))).shape == (0, 6)


def test_baked_textures_hold_the_attributes_in_the_gltf_channel_order(sphere_surface):
    sphere, surface = sphere_surface
    atlas = unwrap_uv(sphere.vertices, sphere.faces, texture_size=32)
    timings: dict[str, float] = {}
    base_color, metallic_roughness = bake_pbr_textures(surface, sphere.vertices[atlas.vmap], atlas, 32, timings)
    assert base_color.shape == (32, 32, 4) and metallic_roughness.shape == (32, 32, 3)
    expected = np.rint(np.array(PBR) * 255).astype(np.uint8)
    # covered texels are baked, the rest inpainted from them (within a few levels)
    for texture, channels in ((base_color, [*expected[:3], expected[5]]),
                              (metallic_roughness, [0, expected[4], expected[3]])):  # (0, roughness, metallic)
        texels = texture.reshape(-1, texture.shape[-1]).astype(int)
        np.testing.assert_array_equal(np.median(texels, axis=0), channels)
        assert np.abs(texels - channels).max() <= 3
    assert {"rasterize", "closest_point", "grid_sample", "inpaint"} <= set(timings)
