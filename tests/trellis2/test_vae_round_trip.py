"""Encode a primitive's O-Voxel with the tiny released-layout encoders and decode it with the tiny decoders: the
latents land on the expected coordinate sets and every stage has the expected shapes (random weights, so no
geometry is expected back)."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.tiny.trellis2 import (
    RELEASED_PIPELINE_ARGS,
    SHAPE_DECODER_NAME,
    SHAPE_ENCODER_NAME,
    SS_DECODER_DIR,
    SS_DECODER_NAME,
    SS_ENCODER_NAME,
    TEX_DECODER_NAME,
    TEX_ENCODER_NAME,
    TINY_POSTERIOR_STD,
    TRELLIS2_DIR,
    sphere_dual_grid,
    sphere_pbr_attributes,
)
from know3d_cli.trellis2.checkpoint import Precision, load_model
from know3d_cli.trellis2.sparse import SparseTensor

pytestmark = pytest.mark.usefixtures("one_thread")

RESOLUTION = 64  # O-Voxel grid side: shape latent grid 4^3, and the sparse structure's own 64^3
RADIUS = 20.0  # not the tiny encoders' calibration sphere (radius 30)


@pytest.fixture(scope="module")
def networks(tiny_root):
    trellis, large = tiny_root / TRELLIS2_DIR / "ckpts", tiny_root / SS_DECODER_DIR / "ckpts"
    names = {"shape_enc": trellis / SHAPE_ENCODER_NAME, "tex_enc": trellis / TEX_ENCODER_NAME,
             "shape_dec": trellis / SHAPE_DECODER_NAME, "tex_dec": trellis / TEX_DECODER_NAME,
             "ss_enc": large / SS_ENCODER_NAME, "ss_dec": large / SS_DECODER_NAME}
    return {role: load_model(stem, precision=Precision.fp32) for role, stem in names.items()}


@torch.no_grad()
def test_shape_and_texture_latents_decode_on_the_encoded_cells(networks):
    coords, vertices, flags = sphere_dual_grid(RESOLUTION, RADIUS)
    assert flags.any(dim=1).float().mean() > 0.5  # a real surface: most voxels own a crossed edge
    attrs = sphere_pbr_attributes(coords, RESOLUTION)

    shape = networks["shape_enc"](SparseTensor(vertices, coords), SparseTensor(flags, coords))
    texture = networks["tex_enc"](SparseTensor(attrs, coords))
    cells = torch.unique(torch.cat([coords[:, :1], coords[:, 1:] // 16], dim=1), dim=0)
    assert torch.equal(shape.coords, cells) and torch.equal(texture.coords, cells)  # shared by both latents
    assert shape.mean.shape == texture.mean.shape == (len(cells), 32)
    assert torch.isfinite(shape.mean).all() and torch.isfinite(texture.logvar).all()
    norm = RELEASED_PIPELINE_ARGS["shape_slat_normalization"]  # the tiny encoders are calibrated to these
    normalised = (shape.mean - torch.tensor(norm["mean"])) / torch.tensor(norm["std"])
    assert normalised.mean().abs() < 0.5 and 0.5 < normalised.std() < 2.0
    expected_std = TINY_POSTERIOR_STD * torch.tensor(norm["std"]).expand_as(shape.std)
    torch.testing.assert_close(shape.std, expected_std, rtol=0.1, atol=0.0)

    decoder = networks["shape_dec"]
    decoder.set_resolution(RESOLUTION)
    latent = shape.sparse(shape.sample(torch.Generator().manual_seed(0)))
    raw, subs = decoder(latent, return_subs=True)
    assert torch.equal(subs[0].coords, cells)  # the decoder starts from the encoded cells
    assert len(raw) > len(cells)  # the calibrated tiny encoder gives latents the tiny decoder subdivides
    assert raw.feats.shape == (len(raw), 7) and int(raw.coords[:, 1:].max()) < RESOLUTION
    parents = torch.unique(torch.cat([raw.coords[:, :1], raw.coords[:, 1:] // 16], dim=1), dim=0)
    assert all(tuple(p) in set(map(tuple, cells.tolist())) for p in parents.tolist())
    (grid,) = decoder.dual_grid(raw)
    assert grid.resolution == RESOLUTION and grid.coords.shape == grid.vertex_offsets.shape == (len(raw), 3)

    colours = networks["tex_dec"](texture.sparse(texture.mean), guide_subs=subs)
    assert torch.equal(colours.coords, raw.coords) and colours.feats.shape == (len(raw), 6)


@torch.no_grad()
def test_sparse_structure_latent_of_the_occupancy_decodes_to_the_64_grid(networks):
    coords, _, _ = sphere_dual_grid(RESOLUTION, RADIUS)
    occupancy = torch.zeros(1, 1, RESOLUTION, RESOLUTION, RESOLUTION)
    occupancy[0, 0, coords[:, 1].long(), coords[:, 2].long(), coords[:, 3].long()] = 1.0
    posterior = networks["ss_enc"](occupancy)
    assert posterior.mean.shape == posterior.logvar.shape == (1, 8, 16, 16, 16)
    logits = networks["ss_dec"](posterior.sample(torch.Generator().manual_seed(1)))
    assert logits.shape == (1, 1, RESOLUTION, RESOLUTION, RESOLUTION) and torch.isfinite(logits).all()
