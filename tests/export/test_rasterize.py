"""The UV-space triangle rasteriser: coverage by texel centre, barycentrics, overlap rule, chunking."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.export.rasterize import rasterize_triangles

SIZE = 8
# two triangles covering the whole image, split along the main diagonal
SQUARE = torch.tensor([[[0.0, 0.0], [8.0, 0.0], [8.0, 8.0]], [[0.0, 0.0], [8.0, 8.0], [0.0, 8.0]]])


def test_a_covered_square_has_every_texel_once_with_barycentrics_that_rebuild_the_centre():
    face_id, bary = rasterize_triangles(SQUARE, SIZE)
    assert face_id.shape == (SIZE, SIZE) and (face_id >= 0).all()
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    assert (face_id[cols > rows] == 0).all() and (face_id[cols < rows] == 1).all()
    assert (face_id[cols == rows] == 1).all()  # centres on the shared edge: the higher face index wins
    torch.testing.assert_close(bary.sum(-1), torch.ones(SIZE, SIZE))
    corners = SQUARE[face_id].to(torch.float32)  # (S, S, 3, 2)
    centres = torch.stack([cols, rows], -1).to(torch.float32) + 0.5
    torch.testing.assert_close((bary[..., None] * corners).sum(-2), centres)


def test_chunking_does_not_change_the_result():
    triangles = torch.rand(40, 3, 2, generator=torch.Generator().manual_seed(0)) * SIZE
    whole = rasterize_triangles(triangles, SIZE)
    chunked = rasterize_triangles(triangles, SIZE, max_candidates=5)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])
    assert (whole[0] >= 0).any()


def test_empty_degenerate_and_off_image_triangles_cover_nothing():
    degenerate = torch.tensor([[[1.0, 1.0], [4.0, 4.0], [7.0, 7.0]]])
    outside = torch.tensor([[[-9.0, -9.0], [-5.0, -9.0], [-9.0, -5.0]]])
    for triangles in (torch.zeros(0, 3, 2), degenerate, outside):
        face_id, bary = rasterize_triangles(triangles, SIZE)
        assert (face_id == -1).all() and (bary == 0).all()


def test_a_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(F, 3, 2\)"):
        rasterize_triangles(torch.zeros(2, 3, 3), SIZE)
