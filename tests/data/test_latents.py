"""A sample's latents: the encoders on its O-Voxel, and the SS occupancy in the upstream order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import trimesh

from know3d_cli.config import AssetConfig, OVoxelConfig
from know3d_cli.data import asset_from_scene, asset_to_ovoxel
from know3d_cli.data.latents import dense_occupancy, encode_latents, ss_occupancy
from know3d_cli.data.models import load_encoders
from know3d_cli.runtime import Runtime
from know3d_cli.tiny.trellis2 import SS_DECODER_DIR, TRELLIS2_DIR, sphere_dual_grid
from know3d_cli.trellis2 import AttentionBackend, ConvBackend, Offload
from know3d_cli.trellis2.sparse import SparseTensor

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = Runtime(torch.device("cpu"), torch.float32, Offload.none, False, AttentionBackend.auto, ConvBackend.auto)


@pytest.fixture(scope="module")
def encoders(tiny_root):
    return load_encoders(tiny_root / TRELLIS2_DIR, tiny_root / SS_DECODER_DIR, CPU)


@torch.no_grad()
def test_at_1024_the_ss_occupancy_is_the_shape_latent_coordinate_set(encoders):
    coords, vertices, flags = sphere_dual_grid(64, 20.0)
    coords = coords + torch.tensor([0, 300, 517, 911], dtype=torch.int32)  # somewhere in a 1024^3 grid
    posterior = encoders.shape(SparseTensor(vertices, coords), SparseTensor(flags, coords))
    cells = ss_occupancy(coords[:, 1:], 1024)
    assert cells.dtype == torch.int32 and torch.equal(cells, posterior.coords[:, 1:])
    assert torch.equal(ss_occupancy(coords[:, 1:], 512), torch.unique(coords[:, 1:] // 8, dim=0))
    grid = dense_occupancy(cells)
    assert grid.shape == (1, 1, 64, 64, 64) and grid.sum() == len(cells)
    assert grid[0, 0, cells[0, 0], cells[0, 1], cells[0, 2]] == 1
    with pytest.raises(ValueError):
        ss_occupancy(coords[:, 1:], 100)


@torch.no_grad()
def test_encode_latents_of_a_primitive(encoders, tiny_root):
    rod = trimesh.creation.cylinder(0.05, 1.0, sections=12)  # thin: few voxels
    asset = asset_from_scene(rod, AssetConfig(), source=Path("rod"), y_up=False)
    ovoxel = asset_to_ovoxel(asset, OVoxelConfig(resolution=256)).quantized()
    latents = encode_latents(ovoxel, encoders)
    assert {k: (str(v.dtype), v.shape[1:]) for k, v in latents.items()} == {
        "occupancy": ("torch.int32", (3,)), "ss_latent": ("torch.float32", (16, 16, 16)),
        "shape_coords": ("torch.int32", (3,)), "shape_feats": ("torch.float32", (32,)),
        "tex_feats": ("torch.float32", (32,))}
    coords = ovoxel.coords.long()
    assert torch.equal(latents["shape_coords"].long(), torch.unique(coords // 16, dim=0))  # 16^3 latent grid
    assert torch.equal(latents["occupancy"].long(), torch.unique(coords // 4, dim=0))  # 256 / 64
    assert len(latents["shape_feats"]) == len(latents["tex_feats"]) == len(latents["shape_coords"])
    batched = ovoxel.batched_coords()
    direct = encoders.tex(SparseTensor(ovoxel.texture_features(), batched)).mean
    torch.testing.assert_close(latents["tex_feats"], direct, rtol=0, atol=0)  # the posterior mean, unnormalised
    ss = encoders.ss(dense_occupancy(latents["occupancy"])).mean[0]
    torch.testing.assert_close(latents["ss_latent"], ss, rtol=0, atol=0)
    assert ss.shape == (8, 16, 16, 16)
    # data.latents=ss: the same occupancy and SS latent, no SC-VAE encoder needed
    ss_only = load_encoders(None, tiny_root / SS_DECODER_DIR, CPU)
    assert ss_only.shape is None and ss_only.tex is None
    only = encode_latents(ovoxel, ss_only, ss_only=True)
    assert set(only) == {"occupancy", "ss_latent"} and torch.equal(only["occupancy"], latents["occupancy"])
    torch.testing.assert_close(only["ss_latent"], latents["ss_latent"], rtol=0, atol=0)
